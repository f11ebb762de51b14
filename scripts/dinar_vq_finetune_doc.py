"""The generated block of docs/dinar_results.md on DINAR's renderer fine-tuned through the VQGAN branch
(issue 11), written by `scripts/dinar_vq_finetune_eval.py doc` from its `eval` JSONs; every number in
the block comes from those files. The block sits between BEGIN and END, right after the DINAR
complete section (whose END marker must be in the file); the hand-written reading after READING is
kept when the block is rewritten.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

BEGIN, END = "<!-- DINAR_VQ_FINETUNE:BEGIN -->", "<!-- DINAR_VQ_FINETUNE:END -->"
READING = "<!-- DINAR_VQ_FINETUNE:READING -->"  # hand-written reading, kept when the block is rewritten
AFTER = "<!-- DINAR_COMPLETE:END -->"
INPAINTING = ("Both + inpainting", "Both + inpainting + occlusion detector")
SIDES = ("front", "back")


def add_doc_arguments(parser) -> None:
    parser.add_argument("--evals", type=Path, nargs="+", required=True,
                        help="eval JSONs of the fine-tuned checkpoints on the main stage-2 run (one column each)")
    parser.add_argument("--secondary", type=Path, nargs="*", default=[],
                        help="eval JSONs of the same checkpoints on another stage-2 run (its inpainting rows only)")
    parser.add_argument("--drivers", type=Path, nargs="*", default=[], help="the fine-tune runs' driver scripts")
    parser.add_argument("--doc", type=Path, default=Path("docs/dinar_results.md"))


def _load(path: Path) -> dict:
    data = json.loads(path.read_text())
    data["path"] = str(path)
    return data


def psnr(results: dict, row: str, side: str) -> float:
    """Mean over sampler seeds of the per-side mean novel-view PSNR."""
    return float(np.mean([s[side]["psnr"] for s in results[row]]))


def paired(data: dict, label: str, row: str, side: str) -> tuple[float, float]:
    """Mean and standard error over the side's inputs of (label - before) PSNR, each input's PSNR
    averaged over sampler seeds first."""
    items = [i for i, s in enumerate(data["side"]) if s == side]
    per = {k: np.mean([s["per_item"]["psnr"] for s in data["results"][k][row]], axis=0)[items] for k in (label, "before")}
    diff = per[label] - per["before"]
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


def _label(data: dict) -> str:
    s = data["settings"]
    return f"after, p = {s['vq_branch_probability']:g}"


def _check_same_before(runs: list[dict]) -> None:
    first = runs[0]["results"]["before"]
    for data in runs[1:]:
        for row, seeds in first.items():
            if any(abs(a[w]["psnr"] - b[w]["psnr"]) > 1e-6 for a, b in zip(seeds, data["results"]["before"][row])
                   for w in SIDES):
                raise SystemExit(f"{data['path']}: its stage-1 ('before') numbers differ from {runs[0]['path']}'s "
                                 "(another stage-2 run or inputs?): one table needs one baseline")


def _cell(results: dict, row: str) -> str:
    return " / ".join(f"{psnr(results, row, w):.2f}" for w in SIDES)


def _table(runs: list[dict], rows: list[str]) -> list[str]:
    labels = [_label(d) for d in runs]
    lines = ["| row | before (stage 1) | " + " | ".join(labels) + " |", "|---" * (2 + len(runs)) + "|"]
    for row in rows:
        lines.append(f"| {row} | {_cell(runs[0]['results']['before'], row)} | "
                     + " | ".join(_cell(d["results"]["after"], row) for d in runs) + " |")
    return lines


def _paired_table(runs: list[dict], rows: list[str]) -> list[str]:
    lines = ["| row | " + " | ".join(_label(d) + " - before" for d in runs) + " |", "|---" * (1 + len(runs)) + "|"]
    for row in rows:
        cells = [" / ".join("{:+.2f} ± {:.2f}".format(*paired(d, "after", row, w)) for w in SIDES) for d in runs]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines


def _probe_tables(runs: list[dict]) -> list[str]:
    lines = []
    for data in runs:
        if not data.get("bn_recalibrate"):
            continue
        res = data["results"]
        labels = [k for k in res if k.startswith("before")] + [k for k in res if k.startswith("after")]
        lines += [f"{_label(data)} (`{data['path']}`; {data['bn_recalibrate']} batches of 4 training pairs):", "",
                  "| row | " + " | ".join(labels) + " |", "|---" * (1 + len(labels)) + "|"]
        lines += [f"| {row} | " + " | ".join(_cell(res[k], row) for k in labels) + " |" for row in res["before"]]
        lines.append("")
    if not lines:
        return ["No eval JSON here ran the probe (`eval --bn-recalibrate N`).", ""]
    return lines


def _date(path: str) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(Path(path).stat().st_mtime))


def block_lines(runs: list[dict], secondary: list[dict], drivers: list[Path]) -> list[str]:
    _check_same_before(runs)
    if secondary:
        _check_same_before(secondary)
    rows = list(runs[0]["results"]["before"])
    work, items, seeds = runs[0]["work"], runs[0]["items"], runs[0]["seeds"]
    fits = []
    for d in runs:
        s = d["settings"]
        fits.append(f"  - {_label(d)}: `python -m zoo fit --config configs/dinar/avatar_vqgan_finetune_cpu.yaml "
                    f"--model.init_args.vqgan={s['vqgan']} --model.init_args.init_from={s['init_from']} "
                    f"--model.init_args.trainable={s['trainable']} --model.init_args.vq_branch_probability="
                    f"{s['vq_branch_probability']:g} --model.init_args.export_path=null` (plus a trainer file: 22 min "
                    f"max_time, checkpoints every 100 steps); stopped at Lightning step {s['global_step']} = "
                    f"{s['global_step'] // 2} batches of 4 (one generator and one discriminator step per batch), "
                    f"Adam {s['lr']:g} / {s['disc_lr']:g}; checkpoint `{d['finetuned']}` ({_date(d['finetuned'])})")
    evals = [f"`ZOO_HOME=/work/cache-dinar-stage2 python scripts/dinar_vq_finetune_eval.py eval --work {d['work']} "
             f"--finetuned {d['finetuned']} --items {d['items']} --seeds {d['seeds']}"
             + (f" --bn-recalibrate {d['bn_recalibrate']}" if d.get("bn_recalibrate") else "") + f" --out {d['path']}`"
             for d in runs + secondary]
    lines = [BEGIN, "", "## DINAR complete: renderer fine-tuned through the VQGAN branch (issue 11)", "",
             "Generated by `python " + " ".join(["scripts/dinar_vq_finetune_eval.py", *sys.argv[1:]]) + "` from the "
             "eval JSONs named below; every number in the tables comes from them.", "",
             "- Fine-tuning (DINAR sections 3.3 / 4: the stage-1 pipeline trained further with every source texture "
             "encoded, quantised and decoded by the frozen stage-2 VQGAN before the renderer; `zoo.systems.vq_branch`), "
             "one seed (0) per run, started from the stage-1 DINAR-row network of the section above:", *fits,
             "- Driver scripts: " + (", ".join(f"`{p}`" for p in drivers) or "none given"),
             "- Evaluation (the DINAR complete section's inputs: its stage-1 export, VQGAN and cached DDIM 200 "
             f"inpaintings; {items} held-out people, front and back input, novel views = the person's other views; "
             f"inpainting rows averaged over {seeds} sampler seeds): " + "; ".join(evals),
             f"- Machine: shared 2-core x86-64 CPU ({platform.machine()}), one torch thread, torch {torch.__version__}, "
             f"Python {platform.python_version()}. Dates: evaluations "
             + ", ".join(sorted({_date(d['path']) for d in runs + secondary})) + "; this block written "
             + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) + ".",
             "- Source files: `zoo/systems/vq_branch.py`, `zoo/systems/neural_avatar.py` (options vqgan, "
             "vq_branch_probability, trainable, init_from), `configs/dinar/avatar_vqgan_finetune_cpu.yaml`, "
             "`scripts/dinar_vq_finetune_eval.py`, `scripts/dinar_vq_finetune_doc.py`.", "",
             f"### Novel-view PSNR (dB), front / back input (`{work}`)", "",
             *_table(runs, rows), "",
             "The Both rows use the single-view stage-1 texture (as is, or through the VQGAN); the Merged rows the "
             "merge of the person's views through the VQGAN (the oracle with the input's known texels pasted back); "
             "the inpainting rows the stage-2 output of the section above. Before and after render the same textures "
             "(only the renderer was trained).", "",
             "### Paired differences (after - before), mean ± standard error over the held-out people, front / back", "",
             *_paired_table(runs, rows), ""]
    if secondary:
        lines += [f"### The same checkpoints on the previous stage-2 run (`{secondary[0]['work']}`, inpainting rows)", "",
                  *_table(secondary, list(INPAINTING)), "", *_paired_table(secondary, list(INPAINTING)), ""]
    lines += ["### Probe: the renderer's BatchNorm running statistics", "",
              "Each network is also evaluated with its renderer's BatchNorm2d running mean / variance re-estimated "
              "(weights unchanged; train-mode forwards, momentum None: the plain average over the batches) on training "
              "people's direct stage-1 textures ('BN: direct'), on the same textures through the VQGAN ('BN: "
              "VQGAN') or on those with the input's known texels pasted back, as a stage-2 output is made ('BN: VQGAN "
              "+ known'); the plain labels keep the statistics the training left (an exponential average, momentum "
              "0.1, over its last batches).", "", *_probe_tables(runs)]
    return lines


def write_doc(args) -> None:
    runs, secondary = [_load(p) for p in args.evals], [_load(p) for p in args.secondary]
    lines = block_lines(runs, secondary, args.drivers)
    text = args.doc.read_text()
    old = text[text.index(BEGIN):text.index(END)] if BEGIN in text and END in text else ""
    lines += ([old[old.index(READING):].rstrip("\n")] if READING in old else [READING, ""]) + [END]
    if old:
        text = text[:text.index(BEGIN)] + "\n".join(lines) + text[text.index(END) + len(END):]
    elif AFTER in text:
        at = text.index(AFTER) + len(AFTER)
        text = text[:at] + "\n\n" + "\n".join(lines) + text[at:]
    else:
        raise SystemExit(f"{args.doc}: no {AFTER} marker to place the block after")
    args.doc.write_text(text)
