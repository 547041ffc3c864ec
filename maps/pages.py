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


def login_page(
    target: str, error: str = "", csrf: str = "", login: str = "", sso: bool = False
) -> str:
    """The login form: an official's login and password, or (machines, old habits) an API key;
    either opens a session. ``csrf`` is the form's login token. With ``sso``, a button first
    for the province's single sign-on."""
    problem = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    province = (
        f"""<form method="get" action="/login/oidc" id="sso-login">
    <input type="hidden" name="next" value="{html.escape(target)}">
    <button type="submit">Đăng nhập bằng tài khoản tỉnh</button>
  </form>
  <p>Hoặc bằng tài khoản cán bộ của Trung tâm IOC:</p>"""
        if sso
        else "<p>Đăng nhập bằng tài khoản cán bộ được cấp cho bạn.</p>"
    )
    hidden = f"""<input type="hidden" name="next" value="{html.escape(target)}">
    <input type="hidden" name="csrf_token" value="{html.escape(csrf)}">"""
    return f"""{_head("Đăng nhập — Trung tâm IOC")}
<body class="ioc-plain">
<main class="ioc-card">
  <h1>Trung tâm IOC</h1>
  {problem}
  {province}
  <form method="post" action="/login" id="account-login">
    <label for="login">Tên đăng nhập</label>
    <input id="login" name="login" autocomplete="username" value="{html.escape(login)}"
           required autofocus>
    <label for="password">Mật khẩu</label>
    <input id="password" name="password" type="password" autocomplete="current-password"
           required>
    {hidden}
    <button type="submit">Đăng nhập</button>
  </form>
  <form method="post" action="/login" id="key-login">
    <p>Hoặc bằng khóa API (máy, tích hợp):</p>
    <label for="key">Khóa API</label>
    <input id="key" name="key" type="password" autocomplete="off" placeholder="ioc_…" required>
    {hidden}
    <button type="submit">Đăng nhập bằng khóa</button>
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
