"""Tables for the analysis (pure Python): per-layer rows next to Keras's counts, as text or HTML;
``report`` arguments are ``kerascnn.analysis.Report``s (this module imports nothing of kerascnn)."""
from __future__ import annotations


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (SI prefixes)."""
    for div, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f} {p}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def human_bytes(n: float) -> str:
    for div, p in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= div:
            return f"{n / div:.2f} {p}"
    return f"{int(n)} B"


def _hw(v) -> str:
    """3 -> '3'; (1, 7) -> '1x7' (a receptive field or jump that differs per axis)."""
    return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _shape(shape) -> str:
    return "x".join(str(v) for v in shape)


def table(headers: list, rows: list, align: str | None = None) -> str:
    """Fixed-width table; ``align`` is a string of 'l'/'r' per column."""
    align = align or "l" * len(headers)
    cols = list(zip(*([headers] + rows))) if rows else [[h] for h in headers]
    widths = [max(len(str(c)) for c in col) for col in cols]

    def fmt(row):
        cells = [str(c).rjust(w) if a == "r" else str(c).ljust(w) for c, w, a in zip(row, widths, align)]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(headers), rule] + [fmt(r) for r in rows])


def analysis_rows(report, keras_params: dict | None = None, depth: int = 1) -> tuple:
    """(headers, rows, align) of the lecture-arithmetic table; ``keras_params`` maps layer name ->
    Keras count_params()."""
    headers = ["Layer", "Type", "Output", "Params"]
    if keras_params is not None:
        headers.append("Keras")
    headers += ["MACs", "RF", "Jump", "Act. mem"]
    rows = []

    def add(layer, indent):
        row = ["  " * indent + ("└ " if indent else "") + layer.name, layer.cls, _shape(layer.output_shape),
               f"{layer.params:,}"]
        if keras_params is not None:
            k = keras_params.get(layer.name)
            row.append("" if k is None else (f"{k:,} ok" if k == layer.params else f"{k:,} MISMATCH"))
        row += [f"{layer.macs:,}", _hw(layer.receptive_field), _hw(layer.jump), human_bytes(layer.activation_bytes)]
        if layer.note:
            row[0] += " *"
        rows.append(row)
        if indent + 1 < depth:
            for c in layer.children:
                add(c, indent + 1)

    for layer in report.layers:
        add(layer, 0)
    align = "lllr" + ("r" if keras_params is not None else "") + "rrrr"
    return headers, rows, align


def analysis_table(report, keras_params: dict | None = None, depth: int = 1) -> str:
    """The lecture-arithmetic table as fixed-width text."""
    return table(*analysis_rows(report, keras_params, depth))


def html_table(headers: list | None, rows: list, align: str | None = None) -> str:
    """The same table as HTML (what Jupyter shows for a report or a value grid; no header row
    without ``headers``)."""
    from html import escape

    align = align or "l" * len(headers or rows[0])
    style = {"l": "text-align:left", "r": "text-align:right"}
    if headers is None:
        body = "".join("<tr>" + "".join(f'<td style="{style[a]}">{escape(str(c))}</td>' for c, a in zip(row, align))
                       + "</tr>" for row in rows)
        return f"<table><tbody>{body}</tbody></table>"
    head = "".join(f'<th style="{style[a]}">{escape(str(h))}</th>' for h, a in zip(headers, align))
    body = "".join("<tr>" + "".join(f'<td style="{style[a]}">{escape(str(c))}</td>' for c, a in zip(row, align))
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def totals(report) -> str:
    return "\n".join(totals_lines(report))


def totals_lines(report) -> list:
    lines = [
        f"Input: {_shape(report.input_shape)}    Output: {_shape(report.output_shape)}",
        f"Total params: {report.total_params:,} (trainable {report.trainable_params:,}, "
        f"non-trainable {report.non_trainable_params:,}; {human_bytes(report.param_bytes)} as float32)",
        f"Multiply-adds per image: {report.macs:,} ({human(report.macs, 'MAC')})",
        (f"Receptive field of the last spatial layer: {_hw(report.receptive_field)} px"
         if report.receptive_field is not None else "Receptive field: none (no layer sees a spatial grid)"),
        f"Activation memory per image (forward, float32): {human_bytes(report.activation_bytes)}",
    ]
    for w in report.warnings():
        lines.append(f"* {w}")
    return lines


def not_analysed(report) -> str:
    """The layers of a Keras model that no rule covers (their params are Keras's own count, their
    multiply-adds are not counted, the receptive field after them is unknown)."""
    unknown = getattr(report, "unknown", None) or []
    if not unknown:
        return ""
    names = ", ".join(f"{n} ({c})" for n, c in unknown[:20]) + (f" and {len(unknown) - 20} more" if len(unknown) > 20
                                                               else "")
    return (f"Not analysed ({len(unknown)} layers without a rule; params from Keras's count_params(), "
            f"MACs not counted): {names}")


def render(report, keras_params: dict | None = None, depth: int = 2, title: str | None = None) -> str:
    """Title, the per-layer table, the totals and any layers not analysed, as one text."""
    parts = [f"{title} at {_shape(report.input_shape)}:"] if title else []
    parts += [analysis_table(report, keras_params, depth), "", totals(report)]
    extra = not_analysed(report)
    if extra:
        parts.append(extra)
    return "\n".join(parts)


def render_html(report, keras_params: dict | None = None, depth: int = 2, title: str | None = None) -> str:
    """``render`` as HTML: the title, the per-layer table, then the totals (Jupyter's view of a report)."""
    from html import escape

    lines = totals_lines(report) + ([not_analysed(report)] if not_analysed(report) else [])
    return ((f"<p><b>{escape(title)} at {_shape(report.input_shape)}</b></p>" if title else "")
            + html_table(*analysis_rows(report, keras_params, depth))
            + "<p>" + "<br>".join(escape(line) for line in lines) + "</p>")
