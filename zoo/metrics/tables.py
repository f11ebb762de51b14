"""Metric tables written next to a run: one markdown file and one CSV per report."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Mapping, Sequence


def _format(value: float | str) -> str:
    if isinstance(value, str):
        return value
    return "nan" if math.isnan(value) else f"{value:.4f}"


def write_metric_tables(folder: str | Path, stem: str, tables: Mapping[str, tuple[Sequence[str], Mapping[str, Mapping[str, float | str]]]],
                        notes: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write `<stem>.md` (one markdown table per entry) and `<stem>.csv` (table,metric,column,value).

    `tables` maps a title to (column names, {metric: {column: value}}); a missing cell is "-", a
    string cell (e.g. "unavailable: ...") is written as is."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines, rows = [], []
    for title, (columns, table) in tables.items():
        lines += [f"### {title}", "", "| metric | " + " | ".join(columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for metric, cells in table.items():
            lines.append(f"| {metric} | " + " | ".join(_format(cells[c]) if c in cells else "-" for c in columns) + " |")
            rows += [(title, metric, c, _format(cells[c])) for c in columns if c in cells]
        lines.append("")
    lines += [f"- {note}" for note in notes]
    md, csv_path = folder / f"{stem}.md", folder / f"{stem}.csv"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["table", "metric", "column", "value"])
        writer.writerows(rows)
    return md, csv_path


def view_and_texture_tables(results: Mapping[str, float], unavailable: Mapping[str, str], variant: str) -> dict:
    """`write_metric_tables` input for results named `sv/<metric>`, `nv/<metric>` (image metrics of
    the render in the input view and in a novel view) and `texture/<metric>/<split>` (against the
    ground-truth texture); `unavailable` maps a metric to why it could not be computed."""
    image_table = {}
    for metric in ("ssim", "psnr", "lpips", "cossim", "cossim_r"):
        if metric in unavailable:
            image_table[metric] = {"SV": unavailable[metric], "NV": "-"}
        elif f"sv/{metric}" in results:
            image_table[metric] = {col: results[f"{key}/{metric}"] for col, key in (("SV", "sv"), ("NV", "nv"))
                                   if f"{key}/{metric}" in results}
    tables = {f"Image metrics ({variant})": (["SV", "NV"], image_table)}
    if any(k.startswith("texture/") for k in results):
        splits = ("all", "visible", "invisible")
        texture = {m: {s: results[f"texture/{m}/{s}"] for s in splits if f"texture/{m}/{s}" in results}
                   for m in ("l1", "psnr", "ssim")}
        tables["Texture metrics vs ground truth"] = (list(splits), texture)
    return tables


def write_view_and_texture_tables(folder: str | Path, stem: str, results: Mapping[str, float],
                                  unavailable: Mapping[str, str], variant: str) -> Path:
    """`view_and_texture_tables` written by `write_metric_tables`, with the notes that say what SV, NV
    (`nv/pairs` ordered pairs of views of a person) and the texel splits are; returns the markdown path."""
    notes = [f"SV: render in the input view; NV: the texture of each view rendered into every other view of "
             f"that person ({int(results.get('nv/pairs', 0))} ordered pairs).",
             "visible = texels seen in the input view (known_mask); invisible = the other atlas texels."]
    return write_metric_tables(folder, stem, view_and_texture_tables(results, unavailable, variant), notes)[0]
