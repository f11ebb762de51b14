"""DINAR's stage-2 training pairs (paper section 3.3): single-view neural texture -> merged texture.

For every person with several views, the frozen stage-1 network (`zoo.modules.dinar.DinarAvatarNet`)
makes one 21-channel neural texture per view (16 generated channels from that view's encoder
style + the 5 image-sampled channels: RGB, known-or-filled mask, gap-fill mask); the views are then
merged with DINAR's eq. 4 (`zoo.render.merge_textures`, softmax of 10 x the texel's view cosine).
A pair is (the texture of one view, the merged texture of its person): the condition and the
target of the latent diffusion (`zoo.systems.latent_inpainting.LatentInpaintingSystem`), which
DINAR makes from renders of 3D scans; here from the synthetic people's multi-view renders, or from
DINAR input folders with several frames per person.

Merging (ours where DINAR's code differs): the generated channels are merged over every view (the
generator covers every texel whatever the view saw, as DINAR's code merges), the RGB and mask
channels only over the views whose known-or-filled mask covers the texel, so an unseen texel's
zeros never darken the merged colour; texels no view saw stay 0 and out of `texture_mask`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from zoo.datamodules.resumable import EvalSampler, ResumableLoader
from zoo.modules.dinar import DinarAvatarNet
from zoo.render.neural_texture import GENERATED_CHANNELS, merge_textures
from zoo.utils.files import atomic_file

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
ENCODER_IMAGES = ("raw", "on_black")


@torch.no_grad()
def person_neural_textures(net: DinarAvatarNet, image: torch.Tensor, mask: torch.Tensor, rgb_channels: torch.Tensor,
                           cosines: torch.Tensor, noise_seeds: list[int] | None = None) -> dict[str, torch.Tensor]:
    """Single-view and merged neural textures of one person's N views.

    Args:
        net: the stage-1 network (generator + RGB channels: 16 + 5 texture channels), in eval mode.
        image: (N, 3, S, S) encoder input in [-1, 1]; mask: (N, 1, S, S) person masks.
        rgb_channels: (N, 5, T, T) `zoo.render.rgb_texture_channels` of each view.
        cosines: (N, 1, T, T) `zoo.render.texel_view_cosines` of each view.
        noise_seeds: per view, the seed of the encoder's noise channel (None: view index 0..N-1),
            so a texture does not depend on which views share the call.

    Returns:
        views (N, 21, T, T) single-view textures; merged (21, T, T); seen (1, T, T) texels at
        least one view saw (known-or-filled).
    """
    if net.generator is None or not net.use_rgb_channels:
        raise ValueError("stage-2 pairs need the full DINAR texture: a DinarAvatarNet with a generator and RGB channels")
    n = image.shape[0]
    seeds = list(range(n)) if noise_seeds is None else list(noise_seeds)
    if len(seeds) != n:
        raise ValueError(f"noise_seeds has {len(seeds)} entries for {n} views")
    size = image.shape[-1]
    noise = torch.cat([torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    views = net.make_texture(image, mask, rgb_channels, noise=noise.to(image), noise_mode="const")
    g = GENERATED_CHANNELS
    generated = merge_textures(views[:, None, :g], cosines[:, None])["texture"][0]
    known = views[:, None, g + 3:g + 4]
    sampled = merge_textures(views[:, None, g:], cosines[:, None], visible=known)
    merged = torch.cat([generated, sampled["texture"][0]])
    return {"views": views, "merged": merged, "seen": sampled["seen"][0]}


class NeuralTexturePairs(Dataset):
    """Precomputed (single-view, merged) neural-texture pairs of one split.

    Item keys (T the texture side; C = 19 = 16 generated + RGB):
        partial (C, T, T): the view's texture without its two mask channels (the systems zero it
            off the known texels); known_mask (1, T, T): texels a pixel landed on;
            gap_mask (1, T, T): texels filled by the 3x3 gap fill (DINAR's B_fill = known | gap);
        texture (C, T, T): the person's merged texture; texture_mask (1, T, T): texels seen by at
            least one view (the merged RGB is defined there; the generated channels everywhere);
        view_id, person_index, person_id: int64;
        with ground truth (synthetic people): albedo (3, T, T) the exact RGB texture in [-1, 1]
            and atlas (1, T, T); facing: the mean texel cosine of the view over the face region
            (> 0: the input shows the front, < 0: the back).
    """

    def __init__(self, views: torch.Tensor, merged: torch.Tensor, seen: torch.Tensor, view_person: torch.Tensor,
                 person_ids: torch.Tensor, extras: dict[str, torch.Tensor] | None = None) -> None:
        if views.ndim != 4 or views.shape[1] != GENERATED_CHANNELS + 5:
            raise ValueError(f"views must be (N, {GENERATED_CHANNELS + 5}, T, T), got {tuple(views.shape)}")
        if len(view_person) != len(views) or len(merged) != len(seen) or len(person_ids) != len(merged):
            raise ValueError(f"inconsistent pair tensors: {len(views)} views, {len(view_person)} view owners, "
                             f"{len(merged)} merged, {len(seen)} seen, {len(person_ids)} person ids")
        self.views, self.merged, self.seen = views, merged, seen
        self.view_person, self.person_ids, self.extras = view_person.long(), person_ids.long(), dict(extras or {})

    def __len__(self) -> int:
        return len(self.views)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        person = int(self.view_person[index])
        view = self.views[index].float()
        filled, gap = view[-2:-1], view[-1:]
        item = {"partial": view[:-2], "known_mask": (filled - gap).clamp(0, 1), "gap_mask": gap,
                "texture": self.merged[person].float()[:-2], "texture_mask": self.seen[person].float(),
                "view_id": torch.tensor(index, dtype=torch.int64),
                "person_index": torch.tensor(person, dtype=torch.int64), "person_id": self.person_ids[person]}
        if "albedo" in self.extras:  # per person
            item["albedo"] = self.extras["albedo"][person].float()
        if "facing" in self.extras:  # per view
            item["facing"] = self.extras["facing"][index].float()
        if "atlas" in self.extras:  # one for all
            item["atlas"] = self.extras["atlas"][0].float()
        return item

    def state(self) -> dict[str, torch.Tensor]:
        return {"views": self.views, "merged": self.merged, "seen": self.seen, "view_person": self.view_person,
                "person_ids": self.person_ids, **{f"extra_{k}": v for k, v in self.extras.items()}}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> NeuralTexturePairs:
        extras = {k[len("extra_"):]: v for k, v in state.items() if k.startswith("extra_")}
        return cls(state["views"], state["merged"], state["seen"], state["view_person"], state["person_ids"], extras)


class NeuralTexturePairsDataModule(pl.LightningDataModule):
    """Stage-2 pairs of DINAR (see the module docstring), from synthetic people or DINAR folders.

    Batch keys: those of `NeuralTexturePairs` (the texture contract of `LatentInpaintingSystem`
    and `VQGANSystem`: texture, texture_mask, partial, known_mask, gap_mask, view_id).

    Args:
        avatar_net: the stage-1 `DinarAvatarNet` (a module, or a pretrained name / folder for
            `zoo.pretrained.load_pretrained`), used frozen in eval mode.
        preset, overrides, data_dir, body: the synthetic people (`SyntheticAvatarDataModule`);
            `store_vertices` is forced on (merging needs each view's texel cosines). Ignored with
            `dinar_folders`.
        dinar_folders: instead of synthetic people, DINAR input folders per split
            ({"train": path, "val": path, ...}); frames are grouped into people by the part of
            the frame id before the last `person_separator`; people with one frame are skipped.
        dinar_options: options of `DinarFolderDataModule` (body, image_size, texture_size, ...).
        person_separator: see `dinar_folders`.
        erode: odd erosion of the person mask before the RGB scatter (the stage-1 run's value;
            DINAR: 5).
        occlusion_detector: keep self-occlusion outlines out of the RGB channels (DINAR 3.5).
        encoder_image: what the encoder sees, as the stage-1 network was trained: "raw" (the
            view with its background, `SyntheticPeopleDataModule` batches) or "on_black"
            (`SyntheticAvatarDataModule` batches). DINAR folders always give "on_black".
        cache_dir: optional folder; each split's tensors are saved there as `<split>.pt` and read
            back (weights_only) when present. Delete it after changing any other argument.
        batch_size, num_workers: DataLoader settings (training: `ResumableLoader`, shuffled from `seed`).
        seed: the training order's seed.
        progress: show a progress bar while building the pairs.
        splits: build only these splits (None: all that exist).
    """

    def __init__(self, avatar_net: str | DinarAvatarNet, preset: str = "small", overrides: dict | None = None,
                 data_dir: str | None = None, body: dict | None = None, dinar_folders: dict[str, str] | None = None,
                 dinar_options: dict | None = None, person_separator: str = "_", erode: int = 3,
                 occlusion_detector: bool = True, encoder_image: str = "raw", cache_dir: str | None = None,
                 batch_size: int = 16, num_workers: int = 0, seed: int = 0, progress: bool = True,
                 splits: list[str] | None = None) -> None:
        super().__init__()
        if splits is not None and (not splits or set(splits) - set(SPLITS)):
            raise ValueError(f"splits must be some of {SPLITS}, got {splits!r}")
        if encoder_image not in ENCODER_IMAGES:
            raise ValueError(f"encoder_image must be one of {ENCODER_IMAGES}, got {encoder_image!r}")
        if erode < 0 or (erode and erode % 2 == 0):
            raise ValueError(f"erode must be 0 or odd, got {erode}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if dinar_folders is not None and (not dinar_folders or set(dinar_folders) - set(SPLITS)):
            raise ValueError(f"dinar_folders must map some of {SPLITS} to folders, got {dinar_folders!r}")
        if not person_separator:
            raise ValueError("person_separator must be a non-empty string")
        if not isinstance(avatar_net, (str, DinarAvatarNet)):
            raise TypeError(f"avatar_net must be a DinarAvatarNet or a pretrained name / folder, got {type(avatar_net).__name__}")
        self.avatar_net_source = avatar_net
        self.preset, self.overrides, self.data_dir, self.body = preset, {**(overrides or {}), "store_vertices": True}, data_dir, body
        self.dinar_folders, self.dinar_options = dinar_folders, dict(dinar_options or {})
        self.person_separator, self.erode, self.occlusion_detector = person_separator, erode, occlusion_detector
        self.encoder_image, self.cache_dir = encoder_image, Path(cache_dir) if cache_dir else None
        self.batch_size, self.num_workers, self.seed, self.progress = batch_size, num_workers, seed, progress
        self.splits = tuple(splits) if splits is not None else SPLITS
        self.datasets: dict[str, NeuralTexturePairs] = {}
        self._net: DinarAvatarNet | None = None

    @property
    def avatar_net(self) -> DinarAvatarNet:
        if self._net is None:
            net = self.avatar_net_source
            if isinstance(net, str):
                from zoo.pretrained import load_pretrained

                net = load_pretrained(net)
            if not isinstance(net, DinarAvatarNet):
                raise TypeError(f"{self.avatar_net_source!r} holds a {type(net).__name__}, not a DinarAvatarNet")
            self._net = net.eval().requires_grad_(False)
        return self._net

    # --- building ---------------------------------------------------------------------------
    def _synthetic_people(self):
        from zoo.datamodules.avatars import SyntheticAvatarDataModule

        dm = SyntheticAvatarDataModule(preset=self.preset, overrides=self.overrides, data_dir=self.data_dir,
                                       erode=self.erode, occlusion_detector=self.occlusion_detector, body=self.body,
                                       progress=self.progress)
        dm.setup()
        return dm

    def _build_synthetic(self, split: str, dm) -> NeuralTexturePairs:
        pairs = dm.datasets[split]
        people = pairs.views
        face = pairs.face_mask_uv[0]  # (1, T, T)
        n_people = people.num_identities
        views, merged, seen, owners, facing, albedo = [], [], [], [], [], []
        for p in tqdm(range(n_people), desc=f"stage-2 pairs ({split})", disable=not self.progress):
            batch = pairs.person_views(p)
            ids = [int(v) for v in people.views_of[p]]
            if self.encoder_image == "raw":
                image = torch.stack([people.view(v)["image"] for v in ids])
            else:
                image = batch["source_image"]
            out = person_neural_textures(self.avatar_net, image, batch["source_mask"], batch["source_rgb_texture"],
                                         batch["source_texel_cosines"], noise_seeds=ids)
            views.append(out["views"].half())
            merged.append(out["merged"].half())
            seen.append(out["seen"])
            owners += [p] * len(ids)
            cos = batch["source_texel_cosines"]
            facing.append((cos * face).sum(dim=(1, 2, 3)) / face.sum().clamp_min(1))
            albedo.append(batch["texture"][0])
        extras = {"albedo": torch.stack(albedo).half(), "facing": torch.cat(facing), "atlas": batch["texture_mask"][:1]}
        return NeuralTexturePairs(torch.cat(views), torch.stack(merged), torch.stack(seen), torch.tensor(owners),
                                  torch.as_tensor(people.person_ids), extras)

    def _build_folder(self, split: str) -> NeuralTexturePairs:
        from zoo.datamodules.dinar_folder import DinarFolderDataModule

        dm = DinarFolderDataModule(self.dinar_folders[split], erode=self.erode, occlusion_detector=self.occlusion_detector,
                                   **self.dinar_options)
        dm.setup()
        frames = dm.dataset.frames
        groups: dict[str, list[int]] = {}
        for i, frame in enumerate(frames):
            groups.setdefault(frame.rsplit(self.person_separator, 1)[0], []).append(i)
        people = {name: idx for name, idx in sorted(groups.items()) if len(idx) > 1}
        if not people:
            raise ValueError(f"{self.dinar_folders[split]}: no person has two frames (frame ids are grouped by the "
                             f"part before the last {self.person_separator!r}; found {frames[:5]})")
        views, merged, seen, owners = [], [], [], []
        for p, (name, idx) in enumerate(tqdm(people.items(), desc=f"stage-2 pairs ({split})", disable=not self.progress)):
            items = [dm.dataset[i] for i in idx]
            batch = {k: torch.stack([it[k] for it in items]) for k in
                     ("source_image", "source_mask", "source_rgb_texture", "source_texel_cosines")}
            out = person_neural_textures(self.avatar_net, batch["source_image"], batch["source_mask"],
                                         batch["source_rgb_texture"], batch["source_texel_cosines"], noise_seeds=idx)
            views.append(out["views"].half())
            merged.append(out["merged"].half())
            seen.append(out["seen"])
            owners += [p] * len(idx)
        return NeuralTexturePairs(torch.cat(views), torch.stack(merged), torch.stack(seen), torch.tensor(owners),
                                  torch.arange(len(people)))

    def setup(self, stage: str | None = None) -> None:
        splits = [s for s in self.splits if self.dinar_folders is None or s in self.dinar_folders]
        todo = [s for s in splits if s not in self.datasets]
        for split in list(todo):
            path = self.cache_dir / f"{split}.pt" if self.cache_dir else None
            if path is not None and path.is_file():
                self.datasets[split] = NeuralTexturePairs.from_state(torch.load(path, map_location="cpu", weights_only=True))
                todo.remove(split)
        if not todo:
            return
        dm = self._synthetic_people() if self.dinar_folders is None else None
        for split in todo:
            data = self._build_synthetic(split, dm) if dm is not None else self._build_folder(split)
            self.datasets[split] = data
            if self.cache_dir is not None:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                with atomic_file(self.cache_dir / f"{split}.pt") as temporary:  # a unique name per process
                    torch.save(data.state(), temporary)
            log.info("stage-2 pairs (%s): %d views of %d people", split, len(data), len(data.merged))

    # --- loaders ----------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        self.setup()
        if split not in self.datasets:
            raise ValueError(f"no {split!r} split (have {sorted(self.datasets)})")
        dataset = self.datasets[split]
        if not shuffle:  # each process a disjoint share, no padded duplicates (exact metrics on N processes)
            return DataLoader(dataset, batch_size=self.batch_size, sampler=EvalSampler(dataset),
                              num_workers=self.num_workers)
        # the epoch order from (seed, epoch) and the position in it are checkpointed: exact resume mid-epoch
        return ResumableLoader(dataset, self.batch_size, shuffle=True, seed=self.seed, num_workers=self.num_workers,
                               drop_last=len(dataset) > self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
