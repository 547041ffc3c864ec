"""The plain pages around the maps: the login form and the error page."""

from __future__ import annotations

import html

from maps import assets

_HEAD = """<!doctype html>
<html lang="vi"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{icon}">
<link rel="stylesheet" href="{css}">
</head>"""


def _head(title: str) -> str:
    return _HEAD.format(
        title=html.escape(title), css=assets.own("pages.css"), icon=assets.own("favicon.svg")
    )


def login_page(target: str, error: str = "", csrf: str = "") -> str:
    """The login form: one API key, which opens a session; ``csrf`` is the form's login token."""
    problem = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""{_head("Đăng nhập — Trung tâm IOC")}
<body class="ioc-plain">
<main class="ioc-card">
  <h1>Trung tâm IOC</h1>
  <p>Đăng nhập bằng khóa API được cấp cho bạn (vai trò điều hành viên, đơn vị xử lý,
  lãnh đạo hoặc quản trị).</p>
  {problem}
  <form method="post" action="/login">
    <label for="key">Khóa API</label>
    <input id="key" name="key" type="password" autocomplete="current-password"
           placeholder="ioc_…" required autofocus>
    <input type="hidden" name="next" value="{html.escape(target)}">
    <input type="hidden" name="csrf_token" value="{html.escape(csrf)}">
    <button type="submit">Đăng nhập</button>
  </form>
</main>
</body></html>"""


def error_page(status: int, message: str) -> str:
    """A short page saying why the page cannot be shown, with a way to log in as someone else."""
    title = "Không có quyền truy cập" if status == 403 else "Không tìm thấy"
    return f"""{_head(f"{title} — Trung tâm IOC")}
<body class="ioc-plain">
<main class="ioc-card">
  <h1>{status} · {title}</h1>
  <p class="error" role="alert">{html.escape(message)}</p>
  <form method="post" action="/logout">
    <button type="submit">Đăng nhập bằng khóa khác</button>
  </form>
</main>
</body></html>"""
