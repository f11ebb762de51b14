"""Novel-view quality of DINAR's stage-1 renderer before and after the fine-tuning through the VQGAN
branch (configs/dinar/avatar_vqgan_finetune_cpu.yaml), on the held-out people of a
scripts/dinar_complete_results.py run (its --work: stage-1 export, pairs, VQGAN, cached inpaintings).

    ZOO_HOME=<the stage-2 run's ZOO_HOME> python scripts/dinar_vq_finetune_eval.py --work <stage-2 work> \
        --finetuned <fine-tune run>/ckpt/last.ckpt [--items 6 --seeds 2] [--out results.json]

Both networks render the same textures (the fine-tuning here trains the renderer only, so the
textures and the stage-2 inputs are those of the stage-1 network; a checkpoint whose encoder or
generator differs from the exported stage-1 network is refused): the single-view texture as is
("Both") and through the VQGAN; the merged multi-view texture through the VQGAN, alone and with the
input's known texels pasted back (the inpainting's oracle); and the cached DDIM 200 inpaintings of
that run (`evaluate`'s eval_cache, without and with the occlusion detector). Metrics: `table2` of
scripts/dinar_complete_eval.py (PSNR, MS-SSIM, ReID cosine over each input's novel views).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch
from dinar_complete_eval import eval_items, split_means, stage1_textures, table2  # scripts/, beside this file
from dinar_complete_results import pairs_data, pairs_module, stage1_net
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="the scripts/dinar_complete_results.py --work folder")
    parser.add_argument("--finetuned", type=Path, required=True, help="a checkpoint of the VQGAN-branch fine-tuning")
    parser.add_argument("--items", type=int, default=6, help="test people (front + back input each), as `evaluate` ran")
    parser.add_argument("--seeds", type=int, default=2, help="cached inpainting seeds, as `evaluate` ran")
    parser.add_argument("--out", type=Path, default=None, help="JSON of every number (default: print only)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    from zoo.modules.reid import freeze
    from zoo.pretrained import load_pretrained

    occ_dm, plain_dm = pairs_module(args, True), pairs_module(args, False, ["test"])
    occ_dm.setup()
    plain_dm.setup()
    occ, plain = occ_dm.datasets["test"], plain_dm.datasets["test"]
    people = occ_dm._synthetic_people().datasets["test"].views
    index, side = eval_items(occ, args.items)
    batch = default_collate([occ[v] for v in index])
    nets = {r: stage1_net(args, r) for r in ("both", "neural", "rgb")}
    by_seed = textures(args, nets, people, plain, occ, batch, index)
    reid = freeze(load_pretrained("reid-synthetic"))
    results = {}
    for label, net in (("before", nets["both"]), ("after", finetuned_net(args, nets["both"]))):
        per_row, _ = table2(by_seed, {"both": net}, reid, people, batch, index)
        results[label] = {row: [{"front": split_means(p, side, "front"), "back": split_means(p, side, "back"),
                                 "per_item": p} for p in per] for row, per in per_row.items()}
    print(f"{'row':58s} {'side':5s} {'PSNR before':>11s} {'after':>7s} {'MS-SSIM before':>14s} {'after':>6s}")
    for row, per_seed in results["before"].items():
        for which in ("front", "back"):
            b = [s[which] for s in per_seed]
            a = [s[which] for s in results["after"][row]]
            mean = lambda xs, k: sum(x[k] for x in xs) / len(xs)  # noqa: E731 - over sampler seeds
            print(f"{row:58s} {which:5s} {mean(b, 'psnr'):11.2f} {mean(a, 'psnr'):7.2f} {mean(b, 'ms_ssim'):14.3f} "
                  f"{mean(a, 'ms_ssim'):6.3f}")
    if args.out is not None:
        args.out.write_text(json.dumps({"finetuned": str(args.finetuned), "work": str(args.work), "items": args.items,
                                        "seeds": args.seeds, "side": side, "results": results}, indent=1))


if __name__ == "__main__":
    main()
