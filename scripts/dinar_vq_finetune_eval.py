"""Novel-view quality of DINAR's stage-1 renderer before and after the fine-tuning through the VQGAN
branch (configs/dinar/avatar_vqgan_finetune_cpu.yaml), on the held-out people of a
scripts/dinar_complete_results.py run (its --work: stage-1 export, pairs, VQGAN, cached inpaintings).

    ZOO_HOME=<the stage-2 run's ZOO_HOME> python scripts/dinar_vq_finetune_eval.py eval --work <stage-2 work> \
        --finetuned <fine-tune run>/ckpt/last.ckpt [--items 6 --seeds 2] [--bn-recalibrate N] [--out results.json]

Both networks render the same textures (the fine-tuning here trains the renderer only, so the
textures and the stage-2 inputs are those of the stage-1 network; a checkpoint whose encoder or
generator differs from the exported stage-1 network is refused): the single-view texture as is
("Both") and through the VQGAN; the merged multi-view texture through the VQGAN, alone and with the
input's known texels pasted back (the inpainting's oracle); and the cached DDIM 200 inpaintings of
that run (`evaluate`'s eval_cache, without and with the occlusion detector). Metrics: `table2` of
scripts/dinar_complete_eval.py (PSNR, MS-SSIM, ReID cosine over each input's novel views).

--bn-recalibrate N: the probe of the renderer's batch-norm running statistics (both networks were
trained in train mode, so each BatchNorm2d keeps a running mean / variance of the inputs it saw: the
fine-tuned one of VQGAN-decoded textures, or of both kinds at vq_branch_probability < 1). Each network
is also evaluated with those statistics re-estimated, weights unchanged, over N training batches (4
source -> target pairs of training people, as the fine-tuning's batches; cumulative average, momentum
None) of direct stage-1 textures ("BN: direct"), of the same textures through the VQGAN ("BN: VQGAN") and of
those with the input's known texels pasted back, as a stage-2 output is made ("BN: VQGAN + known").

    python scripts/dinar_vq_finetune_eval.py doc --evals <eval JSON per fine-tune run> \
        [--secondary <the same on another stage-2 run>] [--drivers <run scripts>] --doc docs/dinar_results.md

writes the generated results block of docs/dinar_results.md (scripts/dinar_vq_finetune_doc.py).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from dinar_complete_data import pairs_data, pairs_module, stage1_net  # scripts/, beside this file
from dinar_complete_eval import eval_items, split_means, stage1_textures, table2
from dinar_vq_finetune_doc import add_doc_arguments, write_doc  # scripts/, beside this file
from torch.utils.data import default_collate

log = logging.getLogger("dinar_vq_finetune")


def finetuned_net(args, base):
    """The stage-1 "both" network with the fine-tuned checkpoint's weights (its encoder and generator
    must be the exported ones: the cached stage-2 textures were made by them)."""
    import copy

    state = torch.load(args.finetuned, map_location="cpu", weights_only=True)["state_dict"]
    network = {k[len("network."):]: v for k, v in state.items() if k.startswith("network.")}
    net = copy.deepcopy(base)
    reference = base.state_dict()
    moved = [k for k in network if not k.startswith("renderer.") and not torch.equal(network[k], reference[k])]
    if moved:
        raise SystemExit(f"{args.finetuned}: its encoder / generator differ from the stage-1 export ({moved[:3]} ...): "
                         "the cached stage-2 textures do not belong to it")
    net.load_state_dict(network, strict=True)
    return net.eval().requires_grad_(False)


def checkpoint_settings(path: Path) -> dict:
    """The fine-tuning's settings and step, from the checkpoint's hyper-parameters."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hp = ckpt.get("hyper_parameters", {})
    keys = ("vq_branch_probability", "trainable", "lr", "disc_lr", "init_from", "vqgan")
    return {"global_step": int(ckpt.get("global_step", 0)), **{k: hp.get(k) for k in keys}}


def training_batches(occ_train, people_train, batches: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`batches` batches of 4 (stage-1 texture of a training view, UV of another view of the same
    person), the people and views drawn from a generator seeded by `seed`."""
    g = torch.Generator().manual_seed(seed)
    n_people = len(occ_train.merged)
    out = []
    for _ in range(batches):
        tex, uv = [], []
        for p in torch.randperm(n_people, generator=g)[:4].tolist():
            views = people_train.views_of[p]
            pick = torch.randperm(len(views), generator=g)[:2].tolist()
            tex.append(occ_train.views[int(views[pick[0]])].float())
            uv.append(people_train.view(int(views[pick[1]]))["uv"])
        out.append((torch.stack(tex), torch.stack(uv)))
    return out


@torch.no_grad()
def recalibrated(net, batches, vqgan=None, paste: bool = False):
    """A copy of `net` whose renderer's BatchNorm running statistics are re-estimated over `batches`
    (train-mode forwards, momentum None: the plain average over batches; no weight changes), the
    textures through `vqgan` first when given, with their known texels pasted back when `paste` (the
    make-up of a stage-2 output: known texels direct, the rest decoded)."""
    import copy

    from torch import nn

    from zoo.systems.neural_avatar import uv_body_mask
    from zoo.systems.vq_branch import vq_roundtrip

    net = copy.deepcopy(net)
    norms = [m for m in net.renderer.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise SystemExit("--bn-recalibrate: this renderer has no BatchNorm2d (norm: instance?)")
    momentum = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.renderer.train()
    for tex, uv in batches:
        if vqgan is not None:
            decoded = vq_roundtrip(vqgan, tex)
            tex = torch.where((tex[:, -2:-1] > 0.5).expand_as(tex), tex, decoded) if paste else decoded
        net.render(tex, uv, uv_body_mask(uv), 1.0)
    for m, value in zip(norms, momentum):
        m.momentum = value
    return net.eval()


@torch.no_grad()
def textures(args, nets, people, plain, occ, batch, index) -> list[dict[str, torch.Tensor]]:
    """Per sampler seed, {row: 21-channel textures of the evaluated inputs}."""
    from zoo.pretrained import load_pretrained
    from zoo.render.uv_space import complete_texture_layout
    from zoo.systems.vq_branch import vq_roundtrip

    vqgan = load_pretrained(str(args.work / "vqgan")).eval()
    single = stage1_textures(nets, people, plain, occ, index, pairs_data(args)["encoder_image"])
    both, both_occ = single["Both textures"], single["both_occ"]
    merged = complete_texture_layout(batch["texture"].float(), batch["texture_mask"])
    decoded = vqgan.decode(vqgan.encode(merged, quantize=True))[:, :merged.shape[1]]
    b_fill = (both_occ[:, -2:-1] > 0.5).expand_as(both_occ)
    rows = {"Both textures": both, "Both, through the VQGAN": vq_roundtrip(vqgan, both),
            "Merged, through the VQGAN": decoded,
            "Merged through the VQGAN, known texels pasted (oracle)": torch.where(b_fill, both_occ, decoded)}
    by_seed = []
    for seed in range(args.seeds):
        cached = {name: args.work / "eval_cache" / f"ddim200_{name}_s{seed}.pt" for name in ("plain", "occ")}
        missing = [str(p) for p in cached.values() if not p.is_file()]
        if missing:
            raise SystemExit(f"no cached inpainting {missing}: run scripts/dinar_complete_results.py evaluate with "
                             f"--items {args.items} --seeds {args.seeds} first")
        seeded = dict(rows) if seed == 0 else {}
        for name, label in (("plain", "Both + inpainting"), ("occ", "Both + inpainting + occlusion detector")):
            tex = torch.load(cached[name], weights_only=True)["texture"]
            if tex.shape[0] != len(index):
                raise SystemExit(f"{cached[name]} holds {tex.shape[0]} inputs, --items {args.items} gives {len(index)}")
            seeded[label] = tex
        by_seed.append(seeded)
    return by_seed


def evaluate(args) -> None:
    from zoo.modules.reid import freeze
    from zoo.pretrained import load_pretrained

    occ_dm, plain_dm = pairs_module(args, True), pairs_module(args, False, ["test"])
    occ_dm.setup()
    plain_dm.setup()
    occ, plain = occ_dm.datasets["test"], plain_dm.datasets["test"]
    people_dm = occ_dm._synthetic_people().datasets
    people = people_dm["test"].views
    index, side = eval_items(occ, args.items)
    batch = default_collate([occ[v] for v in index])
    nets = {r: stage1_net(args, r) for r in ("both", "neural", "rgb")}
    by_seed = textures(args, nets, people, plain, occ, batch, index)
    reid = freeze(load_pretrained("reid-synthetic"))
    networks = {"before": nets["both"], "after": finetuned_net(args, nets["both"])}
    if args.bn_recalibrate:
        calib = training_batches(occ_dm.datasets["train"], people_dm["train"].views, args.bn_recalibrate)
        vqgan = load_pretrained(str(args.work / "vqgan")).eval()
        for label in ("before", "after"):
            networks[f"{label}, BN: direct"] = recalibrated(networks[label], calib)
            networks[f"{label}, BN: VQGAN"] = recalibrated(networks[label], calib, vqgan)
            networks[f"{label}, BN: VQGAN + known"] = recalibrated(networks[label], calib, vqgan, paste=True)
    results = {}
    for label, net in networks.items():
        per_row, _ = table2(by_seed, {"both": net}, reid, people, batch, index)
        results[label] = {row: [{"front": split_means(p, side, "front"), "back": split_means(p, side, "back"),
                                 "per_item": p} for p in per] for row, per in per_row.items()}
        log.info("evaluated %s", label)
    mean = lambda xs, which: sum(x[which]["psnr"] for x in xs) / len(xs)  # noqa: E731 - over sampler seeds
    print("novel-view PSNR, front / back input:")
    print(f"{'row':56s} " + " ".join(f"{label:>20s}" for label in results))
    for row in results["before"]:
        print(f"{row:56s} " + " ".join(f"{mean(r[row], 'front'):9.2f} /{mean(r[row], 'back'):9.2f}" for r in results.values()))
    if args.out is not None:
        args.out.write_text(json.dumps({"finetuned": str(args.finetuned), "settings": checkpoint_settings(args.finetuned),
                                        "work": str(args.work), "items": args.items, "seeds": args.seeds,
                                        "bn_recalibrate": args.bn_recalibrate, "side": side, "results": results}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="evaluate a fine-tuned checkpoint against the stage-1 network")
    ev.add_argument("--work", type=Path, required=True, help="the scripts/dinar_complete_results.py --work folder")
    ev.add_argument("--finetuned", type=Path, required=True, help="a checkpoint of the VQGAN-branch fine-tuning")
    ev.add_argument("--items", type=int, default=6, help="test people (front + back input each), as `evaluate` ran")
    ev.add_argument("--seeds", type=int, default=2, help="cached inpainting seeds, as `evaluate` ran")
    ev.add_argument("--bn-recalibrate", type=int, default=0, metavar="N",
                    help="also evaluate with the renderer's BatchNorm statistics re-estimated over N training batches")
    ev.add_argument("--out", type=Path, default=None, help="JSON of every number (default: print only)")
    doc = sub.add_parser("doc", help="write the generated block of docs/dinar_results.md from eval JSONs")
    add_doc_arguments(doc)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    if args.command == "doc":
        write_doc(args)
    else:
        evaluate(args)


if __name__ == "__main__":
    main()
