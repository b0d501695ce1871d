"""The data map as a standalone SVG image (the download beside the interactive graph): systems on the left,
recipients on the right, one arrow per flow. Drawn on the server so that the image needs no script."""

from __future__ import annotations

from html import escape

from consent.provision.selectors import Graph

ROW = 40
WIDTH = 900
BOX_W, BOX_H = 260, 28
LEFT_X, RIGHT_X = 20, WIDTH - 20 - BOX_W


def graph_svg(graph: Graph) -> str:
    """An SVG document of `graph`: every node a labelled box, every edge an arrow with its label."""
    left = [n for n in graph.nodes if n["kind"] in ("crm", "system")]
    right = [n for n in graph.nodes if n["kind"] not in ("crm", "system")]
    pos: dict[str, tuple[int, int]] = {}
    for i, n in enumerate(left):
        pos[n["id"]] = (LEFT_X, 20 + i * ROW)
    for i, n in enumerate(right):
        pos[n["id"]] = (RIGHT_X, 20 + i * ROW)
    height = 40 + max(len(left), len(right), 1) * ROW
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="8" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
    ]
    for e in graph.edges:
        if e["source"] not in pos or e["target"] not in pos:
            continue
        sx, sy = pos[e["source"]]
        tx, ty = pos[e["target"]]
        x1, y1 = sx + BOX_W, sy + BOX_H // 2
        x2, y2 = (tx, ty + BOX_H // 2) if tx != sx else (tx + BOX_W, ty + BOX_H // 2)
        out.append(
            f'<g class="edge" data-id="{escape(e["id"])}"><line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" '
            'stroke="#555" marker-end="url(#arrow)"/>'
            f'<text x="{(x1 + x2) // 2}" y="{(y1 + y2) // 2 - 3}" text-anchor="middle" fill="#333">'
            f"{escape(e['label'])}</text></g>"
        )
    for n in graph.nodes:
        x, y = pos[n["id"]]
        fill = {"crm": "#cfe8ff", "system": "#e8f4e8"}.get(n["kind"], "#fff2cc")
        out.append(
            f'<g class="node" data-id="{escape(n["id"])}"><rect x="{x}" y="{y}" width="{BOX_W}" '
            f'height="{BOX_H}" rx="4" fill="{fill}" stroke="#333"/>'
            f'<text x="{x + 8}" y="{y + 18}">{escape(n["label"])}（{escape(n["country"])}）</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)
