"""The leaders' review page: a period form, charts drawn as inline SVG, tables with CSV links.

Nothing is fetched by the browser but the page itself and the CSV files: no script, no
stylesheet or font from elsewhere, so it works on a closed network and prints as it looks.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from maps.review.percentiles import APPROXIMATE, EXACT, EXACT_GROUP_MAX, PERCENTILE_KEYS
from maps.review.period import DEFAULT_MONTHS, MAX_MONTHS, ReviewQuery
from maps.review.table import Column, Table

REVIEW_PATH: Final = "/review"

DEFINITIONS: Final = (
    (
        "Phạm vi",
        "Các tháng đã chọn (trọn tháng, theo giờ Việt Nam). Phản ánh được tính theo "
        "tháng tiếp nhận; hồ sơ theo ngày tiếp nhận (tỷ lệ trực tuyến, thanh toán, số hóa) và ngày "
        "trả kết quả (tỷ lệ đúng hạn, thời gian xử lý). "
        f"Mặc định: {DEFAULT_MONTHS} tháng gần nhất; nếu các tháng đó chưa có số liệu, "
        f"{DEFAULT_MONTHS} tháng gần nhất có số liệu. Tối đa {MAX_MONTHS} tháng.",
    ),
    (
        "Giờ HC",
        "Giờ hành chính: chỉ tính giờ làm việc của ngày làm việc (trừ thứ Bảy, Chủ nhật, "
        "ngày lễ, có tính ngày làm bù).",
    ),
    ("Phản hồi", "Thời gian từ khi tiếp nhận phản ánh đến khi một cán bộ xử lý lần đầu."),
    (
        "Xử lý",
        "Thời gian từ khi tiếp nhận đến khi xử lý xong, trừ thời gian chờ người dân bổ "
        "sung thông tin.",
    ),
    (
        "Trung vị, P90",
        "Giá trị ở giữa và giá trị mà 90 % phản ánh không vượt quá, nội suy tuyến tính giữa "
        "hai phản ánh gần nhất. Dòng có đến "
        + f"{EXACT_GROUP_MAX:,}".replace(",", ".")
        + " phản ánh: tính chính xác từ từng phản ánh. "
        "Dòng lớn hơn: đọc từ biểu đồ tần suất với các khoảng rộng 2 %, lệch không quá 2 % so "
        "với phản ánh ở đúng thứ hạng đó; các số này có dấu ≈ và cột «Trung vị, P90» ghi "
        "«gần đúng».",
    ),
    (
        "Tỷ lệ đúng hạn (phản ánh)",
        "(Trước hạn + đúng hạn) / số phản ánh đã xử lý có thời hạn. "
        "Trước hạn: xong trước ngày hết hạn; đúng hạn: xong trong ngày hết hạn, trước giờ hết hạn.",
    ),
    (
        "Đang quá hạn",
        "Phản ánh (hồ sơ) tiếp nhận trong kỳ, chưa xử lý xong và đã quá hạn tại thời điểm xem.",
    ),
    (
        "Theo cán bộ",
        "Khi chọn một cơ quan: phản ánh của cơ quan tiếp nhận trong kỳ, theo cán bộ đang được "
        "phân công (chuyển cơ quan thì bỏ phân công), tính chính xác trên từng phản ánh.",
    ),
    ("Tiếp nhận (hồ sơ)", "Hồ sơ được tiếp nhận trong kỳ (QĐ 766/QĐ-TTg)."),
    (
        "Tỷ lệ trực tuyến",
        "Hồ sơ nộp trực tuyến / hồ sơ tiếp nhận; tách thành trực tuyến một phần "
        "và toàn trình, mỗi loại cũng chia cho số hồ sơ tiếp nhận.",
    ),
    (
        "Tỷ lệ thanh toán trực tuyến",
        "Hồ sơ thanh toán trực tuyến / hồ sơ có nghĩa vụ tài chính "
        "(có yêu cầu nộp phí, lệ phí hoặc đã thanh toán trực tuyến).",
    ),
    ("Tỷ lệ số hóa", "Hồ sơ tiếp nhận có thành phần hồ sơ được số hóa / hồ sơ tiếp nhận."),
    (
        "Tỷ lệ đúng hạn (hồ sơ)",
        "(Trước hạn + đúng hạn) / hồ sơ đã trả kết quả trong kỳ; trễ hạn là phần còn lại.",
    ),
    (
        "Thời gian xử lý TB",
        "Thời gian trung bình từ tiếp nhận đến trả kết quả, trừ thời gian "
        "tạm dừng (chờ bổ sung, chờ thực hiện nghĩa vụ tài chính), tính bằng ngày làm việc.",
    ),
    (
        "Kênh nộp hồ sơ",
        "Chỉ hồ sơ nộp qua Cổng dịch vụ công (kênh trực tuyến) được tính là trực tuyến. Hồ sơ "
        "nộp tại ki-ốt tự phục vụ, qua bưu chính công ích (BCCI), qua bưu điện thường hay tại "
        "Bộ phận một cửa được tính vào số tiếp nhận, không tính là trực tuyến.",
    ),
    (
        "Tỷ lệ hài lòng",
        "Số lượt đánh giá «hài lòng» / tổng số lượt đánh giá trong kỳ (hài lòng + bình "
        "thường + không hài lòng), theo thời điểm đánh giá; mỗi phản ánh, mỗi hồ sơ tính một "
        "lượt: lượt đánh giá sau cùng. Thang 1–5: 4–5 là hài lòng, 3 là bình thường, 1–2 là "
        "không hài lòng. Người dân chỉ đánh giá được sau khi có kết quả (phản ánh đã xử lý "
        "xong hoặc đã đóng; hồ sơ đã trả kết quả). Nhóm «Mức độ hài lòng» của Bộ chỉ số theo "
        "QĐ 766/QĐ-TTg ngày 23/6/2022.",
    ),
)

_STYLE: Final = """
body{font:14px/1.45 system-ui,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#0f3d63;color:#fff;padding:12px 24px;display:flex;gap:24px;align-items:center}
header h1{font-size:20px;margin:0;flex:1}header form{margin:0}
header button{background:none;border:1px solid #fff8;color:#fff;border-radius:4px;padding:4px 10px}
main{padding:16px 24px;max-width:1500px}
section{background:#fff;border-radius:6px;padding:12px 16px;margin:0 0 16px;box-shadow:0 1px 2px #0002}
h2{font-size:16px;margin:0 0 8px;display:flex;gap:12px;align-items:baseline}
h2 a{font-size:13px;font-weight:normal}
form.period{display:flex;flex-wrap:wrap;gap:12px;align-items:end}
form.period label{display:flex;flex-direction:column;font-size:12px;color:#566}
form.period button{padding:6px 16px}
.error{color:#a11;font-weight:600}
.note{color:#7a5200;background:#fff6e0;padding:6px 10px;border-radius:4px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:16px}
figure{margin:0}figure svg{width:100%;height:auto;display:block}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid #e3e7eb;text-align:right;white-space:nowrap}
th{background:#eef2f5;position:sticky;top:0}
td.text,th.text{text-align:left}
tr.total td{font-weight:600;background:#f8fafb}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0}
dt{font-weight:600}dd{margin:0}
svg text{font:11px system-ui,sans-serif;fill:#334}
.legend{font-size:12px;color:#566}
"""


@dataclass(frozen=True)
class ReviewView:
    """Everything the page shows."""

    query: ReviewQuery
    tables: Sequence[Table]
    agencies: Mapping[str, str]
    categories: Mapping[str, str]
    generated: str
    who: str
    error: str = ""


def _e(value: object) -> str:
    return html.escape(str(value))


def shown(value: Any, unit: str) -> str:
    """A value as the page shows it (Vietnamese number format)."""
    if value is None:
        return "—"
    if unit == "count":
        return f"{int(value):,}".replace(",", ".")
    if unit == "rate":
        return f"{100 * float(value):.1f} %".replace(".", ",")
    if unit in ("hours", "days"):
        return f"{float(value):,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")
    if unit == "accuracy":
        return {EXACT: "chính xác", APPROXIMATE: "≈ gần đúng (±2 %)"}.get(str(value), str(value))
    return str(value)


def table_csv(table: Table) -> str:
    """A table as CSV: one header row of column keys, raw values (rates as fractions)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.key for c in table.columns])
    for row in table.rows:
        writer.writerow(["" if row.get(c.key) is None else row[c.key] for c in table.columns])
    return out.getvalue()


def csv_link(name: str, query: ReviewQuery) -> str:
    return f"{REVIEW_PATH}/{name}.csv?{urlencode(query.params())}"


def _cell(column: Column, row: Mapping[str, Any]) -> str:
    kind = "text" if column.unit in ("text", "date", "accuracy") else "num"
    text = shown(row.get(column.key), column.unit)
    if column.key in PERCENTILE_KEYS and row.get("percentiles") == APPROXIMATE and text != "—":
        text = f"≈ {text}"
    return f'<td class="{kind}">{_e(text)}</td>'


def _table(table: Table, query: ReviewQuery) -> str:
    heads = "".join(
        f'<th class="{"text" if c.unit in ("text", "date", "accuracy") else "num"}" scope="col">{_e(c.label)}</th>'
        for c in table.columns
    )
    body = []
    for row in table.rows:
        total = table.name != "weeks" and row.get(table.columns[0].key) is None
        cells = "".join(_cell(c, row) for c in table.columns)
        body.append(f"<tr{' class=total' if total else ''}>{cells}</tr>")
    empty = (
        "" if table.rows else f'<tr><td colspan="{len(table.columns)}">Không có số liệu</td></tr>'
    )
    return f"""<section id="{_e(table.name)}">
<h2>{_e(table.title)} <a href="{_e(csv_link(table.name, query))}" download>Tải CSV</a></h2>
<div class="scroll"><table data-table="{_e(table.name)}"><thead><tr>{heads}</tr></thead>
<tbody>{"".join(body)}{empty}</tbody></table></div>
</section>"""


# -- charts --------------------------------------------------------------------------------


def trend_chart(weeks: Table) -> str:
    """Tickets received per week (bars) and the on-time rate (line, right-hand scale)."""
    rows = weeks.rows
    width, height, left, right, top, bottom = 640, 240, 48, 44, 12, 36
    inner_w, inner_h = width - left - right, height - top - bottom
    peak = max([int(r["received"]) for r in rows] + [1])
    step = inner_w / max(len(rows), 1)
    bars, points, labels = [], [], []
    for i, row in enumerate(rows):
        x = left + i * step
        h = inner_h * int(row["received"]) / peak
        bars.append(
            f'<rect class="bar" x="{x + step * 0.15:.1f}" y="{top + inner_h - h:.1f}" '
            f'width="{step * 0.7:.1f}" height="{h:.1f}" fill="#5b8db8">'
            f"<title>{_e(row['week'])}: {_e(shown(row['received'], 'count'))} phản ánh</title></rect>"
        )
        if row["on_time_rate"] is not None:
            y = top + inner_h * (1 - float(row["on_time_rate"]))
            points.append(f"{x + step / 2:.1f},{y:.1f}")
        if i % max(1, len(rows) // 8) == 0:
            labels.append(
                f'<text x="{x + step / 2:.1f}" y="{height - bottom + 14}" '
                f'text-anchor="middle">{_e(row["week"][5:])}</text>'
            )
    axis = "".join(
        f'<text x="{left - 6}" y="{top + inner_h * (1 - f) + 4:.1f}" text-anchor="end">'
        f"{_e(shown(round(peak * f), 'count'))}</text>"
        f'<text x="{width - right + 6}" y="{top + inner_h * (1 - f) + 4:.1f}">{int(f * 100)} %</text>'
        f'<line x1="{left}" x2="{width - right}" y1="{top + inner_h * (1 - f):.1f}" '
        f'y2="{top + inner_h * (1 - f):.1f}" stroke="#e3e7eb"/>'
        for f in (0, 0.5, 1)
    )
    line = (
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#c0392b" stroke-width="2"/>'
        if points
        else ""
    )
    return f"""<figure data-chart="weeks"><svg viewBox="0 0 {width} {height}" role="img"
aria-label="Phản ánh tiếp nhận theo tuần và tỷ lệ đúng hạn">{axis}{"".join(bars)}{line}{"".join(labels)}</svg>
<figcaption class="legend"><span style="color:#5b8db8">■</span> phản ánh tiếp nhận mỗi tuần
· <span style="color:#c0392b">━</span> tỷ lệ đúng hạn</figcaption></figure>"""


def rate_bars(title: str, items: Sequence[tuple[str, float | None]], name: str) -> str:
    """Horizontal bars of rates (0–1), one per labelled item."""
    row_h, left, width = 22, 190, 640
    height = row_h * max(len(items), 1) + 8
    parts = []
    for i, (label, value) in enumerate(items):
        y = 4 + i * row_h
        size = 0.0 if value is None else max(0.0, min(1.0, value))
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{_e(label[:30])}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{(width - left - 60) * size:.1f}" height="{row_h - 8}" '
            f'fill="#2e8b57"><title>{_e(label)}: {_e(shown(value, "rate"))}</title></rect>'
            f'<text x="{left + (width - left - 60) * size + 6:.1f}" y="{y + 15}">'
            f"{_e(shown(value, 'rate'))}</text>"
        )
    return f"""<figure data-chart="{_e(name)}"><svg viewBox="0 0 {width} {height}" role="img"
aria-label="{_e(title)}">{"".join(parts)}</svg><figcaption class="legend">{_e(title)}</figcaption></figure>"""


def _charts(tables: Mapping[str, Table]) -> str:
    figures = []
    if "weeks" in tables:
        figures.append(trend_chart(tables["weeks"]))
    agencies = tables.get("agencies")
    if agencies is not None:
        ranked = [r for r in agencies.rows if r["agency"] is not None][:15]
        figures.append(
            rate_bars(
                "Tỷ lệ phản ánh xử lý đúng hạn theo cơ quan (15 cơ quan nhận nhiều nhất)",
                [(str(r["name"]), r["on_time_rate"]) for r in ranked],
                "agencies",
            )
        )
    dossiers = tables.get("dossiers")
    if dossiers is not None and dossiers.rows and dossiers.rows[0]["received"]:
        first = dossiers.rows[0]
        figures.append(
            rate_bars(
                f"Chỉ số hồ sơ TTHC — {first['name']}",
                [
                    ("Trực tuyến", first["online_rate"]),
                    ("Trực tuyến toàn trình", first["full_process_rate"]),
                    ("Thanh toán trực tuyến", first["online_payment_rate"]),
                    ("Số hóa", first["digitised_rate"]),
                    ("Đúng hạn", first["on_time_rate"]),
                ],
                "dossiers",
            )
        )
    satisfaction = tables.get("satisfaction")
    totals = (
        [r for r in satisfaction.rows if r["by"] == "all" and r["rated"]] if satisfaction else []
    )
    if totals:
        figures.append(
            rate_bars(
                "Tỷ lệ hài lòng của người dân",
                [(str(r["name"]), r["satisfied_rate"]) for r in totals],
                "satisfaction",
            )
        )
    return f'<section class="charts">{"".join(figures)}</section>'


# -- the page ------------------------------------------------------------------------------


def _options(choices: Mapping[str, str], chosen: str | None, everything: str) -> str:
    out = [f'<option value="">{_e(everything)}</option>']
    for code, name in sorted(choices.items(), key=lambda kv: kv[1]):
        mark = " selected" if code == chosen else ""
        out.append(f'<option value="{_e(code)}"{mark}>{_e(name)} ({_e(code)})</option>')
    return "".join(out)


def _form(view: ReviewView) -> str:
    q = view.query
    error = f'<p class="error" role="alert">{_e(view.error)}</p>' if view.error else ""
    if q.note:
        error += f'<p class="note" role="status">{_e(q.note)}</p>'
    return f"""<section>{error}<form class="period" method="get" action="{REVIEW_PATH}">
<label>Từ tháng<input type="month" name="since" value="{q.first_month:%Y-%m}" required></label>
<label>Đến tháng<input type="month" name="until" value="{q.last_month:%Y-%m}" required></label>
<label>Cơ quan<select name="agency">{_options(view.agencies, q.agency, "Tất cả cơ quan")}</select></label>
<label>Lĩnh vực (phản ánh)<select name="category">{_options(view.categories, q.category, "Tất cả lĩnh vực")}</select></label>
<button type="submit">Xem</button></form></section>"""


def render_review(view: ReviewView) -> str:
    q = view.query
    tables = {t.name: t for t in view.tables}
    period = f"{q.first_month:%m/%Y} – {q.last_month:%m/%Y}"
    definitions = "".join(f"<dt>{_e(term)}</dt><dd>{_e(text)}</dd>" for term, text in DEFINITIONS)
    return f"""<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Đánh giá kết quả xử lý {_e(period)} — Trung tâm IOC</title>
<style>{_STYLE}</style></head>
<body>
<header><h1>Đánh giá kết quả xử lý · {_e(period)}</h1>
<span>{_e(view.who)} · số liệu lúc {_e(view.generated)}</span>
<form method="post" action="/logout"><button type="submit">Đăng xuất</button></form></header>
<main>
{_form(view)}
{_charts(tables) if tables else ""}
{"".join(_table(t, q) for t in view.tables)}
<section id="definitions"><h2>Cách tính</h2><dl>{definitions}</dl></section>
</main>
</body></html>"""
