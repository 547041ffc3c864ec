"""Data tables, the daily traffic curve and small shared helpers of the province simulator.

Everything here is made up for a plausible demo of Huế: street and ward names are real, but the
procedure codes, legal times and agency unit numbers are placeholders, not the national catalogue.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Ho_Chi_Minh")

BBox = tuple[float, float, float, float]  # (min_lon, min_lat, max_lon, max_lat)
HUE_BBOX: BBox = (107.40, 16.30, 107.75, 16.60)


def iso(t: float) -> str:
    """Epoch seconds as local ISO-8601 with offset, e.g. 2026-11-21T08:00:00.000+07:00."""
    return datetime.fromtimestamp(t, TZ).isoformat(timespec="milliseconds")


def uniform_point(rng: random.Random, bbox: BBox, margin: float = 0.0) -> tuple[float, float]:
    """A point drawn evenly over `bbox`, kept `margin` (a share of each side) off the edges."""
    min_lon, min_lat, max_lon, max_lat = bbox
    dx, dy = (max_lon - min_lon) * margin, (max_lat - min_lat) * margin
    x = rng.uniform(min_lon + dx, max_lon - dx)
    y = rng.uniform(min_lat + dy, max_lat - dy)
    return round(x, 6), round(y, 6)


def point_near(
    rng: random.Random, bbox: BBox, lon: float, lat: float, sigma: float
) -> tuple[float, float]:
    """A gaussian draw around (lon, lat), clamped into `bbox` so every event stays in the area."""
    min_lon, min_lat, max_lon, max_lat = bbox
    x = min(max(rng.gauss(lon, sigma), min_lon), max_lon)
    y = min(max(rng.gauss(lat, sigma), min_lat), max_lat)
    return round(x, 6), round(y, 6)


FIELD_REPORT_CATEGORIES: tuple[str, ...] = (
    "giao_thong",
    "ha_tang",
    "chieu_sang",
    "cap_thoat_nuoc",
    "moi_truong",
    "cay_xanh",
    "trat_tu_do_thi",
    "xay_dung",
    "an_ninh_trat_tu",
    "an_toan_thuc_pham",
    "khac",
)

# Background mix for reports that do not come from a hotspot; roughly the shares a Hue-S style
# app sees (traffic, environment and urban order dominate).
CATEGORY_WEIGHTS: dict[str, float] = {
    "giao_thong": 18,
    "ha_tang": 12,
    "chieu_sang": 8,
    "cap_thoat_nuoc": 9,
    "moi_truong": 15,
    "cay_xanh": 7,
    "trat_tu_do_thi": 13,
    "xay_dung": 6,
    "an_ninh_trat_tu": 6,
    "an_toan_thuc_pham": 3,
    "khac": 3,
}

DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "giao_thong": (
        "Ùn tắc kéo dài trên đường {street}, đề nghị cử lực lượng phân luồng.",
        "Đèn tín hiệu giao thông tại đường {street} không hoạt động.",
        "Xe tải đỗ sai quy định chắn một làn đường {street}.",
    ),
    "ha_tang": (
        "Mặt đường {street} xuất hiện ổ gà lớn, xe máy dễ té ngã.",
        "Nắp hố ga trên vỉa hè đường {street} bị vỡ, nguy hiểm cho người đi bộ.",
        "Lan can cầu gần đường {street} bị hư hỏng.",
    ),
    "chieu_sang": (
        "Cả dãy đèn đường {street} không sáng từ tối qua.",
        "Cột đèn chiếu sáng trên đường {street} bị nghiêng, có nguy cơ đổ.",
    ),
    "cap_thoat_nuoc": (
        "Ngập sâu khoảng 30 cm trên đường {street} sau mưa lớn.",
        "Vỡ ống cấp nước trên đường {street}, nước chảy tràn mặt đường.",
        "Cống thoát nước đường {street} bị tắc, bốc mùi hôi.",
    ),
    "moi_truong": (
        "Rác thải tập kết trái phép ở đầu kiệt đường {street}.",
        "Khói đốt rác gây ô nhiễm khu dân cư gần đường {street}.",
        "Nước thải chảy ra sông từ cơ sở kinh doanh trên đường {street}.",
    ),
    "cay_xanh": (
        "Cây xanh trên đường {street} gãy cành sau gió lớn, chắn lối đi.",
        "Cây cổ thụ đường {street} nghiêng, đề nghị kiểm tra cắt tỉa.",
    ),
    "trat_tu_do_thi": (
        "Hàng quán lấn chiếm vỉa hè đường {street}, người đi bộ phải xuống lòng đường.",
        "Biển quảng cáo dựng trái phép trên đường {street}.",
        "Bán hàng rong tụ tập gây mất trật tự tại đường {street}.",
    ),
    "xay_dung": (
        "Công trình xây dựng trên đường {street} thi công ngoài giờ, gây ồn.",
        "Vật liệu xây dựng đổ tràn ra đường {street}.",
        "Nghi xây dựng sai phép tại một căn nhà trên đường {street}.",
    ),
    "an_ninh_trat_tu": (
        "Nhóm thanh niên tụ tập đua xe trên đường {street} vào ban đêm.",
        "Mở nhạc quá lớn sau 22 giờ tại quán trên đường {street}.",
    ),
    "an_toan_thuc_pham": (
        "Cơ sở ăn uống trên đường {street} không đảm bảo vệ sinh an toàn thực phẩm.",
        "Nghi ngộ độc thực phẩm sau khi ăn tại quán trên đường {street}.",
    ),
    "khac": (
        "Đề nghị bố trí thêm ghế đá, thùng rác công cộng trên đường {street}.",
        "Chó thả rông không rọ mõm trên đường {street}.",
    ),
}

STREETS: tuple[str, ...] = (
    "Lê Lợi", "Hùng Vương", "Trần Hưng Đạo", "Lê Duẩn", "Nguyễn Huệ", "Hà Nội", "Bà Triệu",
    "Nguyễn Sinh Cung", "Điện Biên Phủ", "Trường Chinh", "Lý Thường Kiệt", "Đống Đa",
    "Phan Đình Phùng", "Nguyễn Trãi", "Tố Hữu", "Võ Văn Kiệt", "An Dương Vương",
    "Nguyễn Tất Thành", "Mai Thúc Loan", "Đinh Tiên Hoàng", "Kim Long", "Phạm Văn Đồng",
    "Nguyễn Lộ Trạch", "Ngự Bình", "Chi Lăng", "Huỳnh Thúc Kháng", "Trần Phú", "Đội Cung",
    "Ngô Quyền", "Lê Quý Đôn", "Nguyễn Văn Linh", "Tôn Đức Thắng", "Bùi Thị Xuân",
)  # fmt: skip

BRIDGES: tuple[str, ...] = ("Trường Tiền", "Phú Xuân", "Dã Viên", "Chợ Dinh", "Bạch Hổ")

WARDS: tuple[str, ...] = (
    "Phường Phú Xuân", "Phường Kim Long", "Phường Vỹ Dạ", "Phường Thuận Hoá", "Phường Hương An",
    "Phường Thuỷ Xuân", "Phường An Cựu", "Phường Thuận An", "Phường Dương Nỗ",
    "Phường Hương Thuỷ", "Phường Hương Trà", "Phường Mỹ Thượng", "Phường Kim Trà",
)  # fmt: skip

FAMILY_NAMES: tuple[str, ...] = (
    "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Phan", "Võ", "Đặng", "Hồ", "Ngô", "Tôn Nữ",
)  # fmt: skip
MIDDLE_NAMES: tuple[str, ...] = ("Văn", "Thị", "Hữu", "Minh", "Ngọc", "Quang", "Thanh")
GIVEN_NAMES: tuple[str, ...] = (
    "An", "Bình", "Châu", "Dũng", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa", "Hùng", "Khánh", "Lan",
    "Long", "Mai", "Nam", "Phúc", "Quân", "Tâm", "Thảo", "Trang", "Tuấn", "Vy",
)  # fmt: skip


@dataclass(frozen=True)
class Procedure:
    """An administrative procedure (TTHC) as the simulator plays it."""

    code: str
    legal_days: int  # legal processing time in working days; the wire format does not carry it
    agencies: tuple[str, ...]
    fee_share: float  # share of dossiers that owe a fee or tax before the result
    located: bool  # land and building dossiers concern a parcel, so they carry a point


PROCEDURES: tuple[Procedure, ...] = (
    Procedure("1.001612", 15, ("SO-TNMT",), 0.8, True),
    Procedure("2.000889", 5, ("UBND-PHU-XUAN", "UBND-THUAN-HOA", "UBND-VY-DA"), 0.1, False),
    Procedure("1.004227", 3, ("UBND-PHU-XUAN", "UBND-KIM-LONG", "UBND-AN-CUU"), 0.0, False),
    Procedure("1.009972", 20, ("SO-XD",), 0.6, True),
    Procedure("2.001711", 10, ("SO-XD", "UBND-THUAN-HOA"), 0.3, True),
    Procedure("1.000775", 7, ("SO-TP",), 0.5, False),
    Procedure("1.003000", 10, ("SO-TC",), 0.2, False),
    Procedure("2.000255", 5, ("SO-YT",), 0.4, False),
    Procedure("1.005092", 30, ("SO-TNMT", "SO-XD"), 0.9, True),
)

# Unit numbers used in dossier ids ("H46.<unit>-yymmdd-nnnn"); H46 is Huế's province code.
AGENCY_UNITS: dict[str, int] = {
    "SO-TNMT": 22,
    "SO-XD": 23,
    "SO-TC": 24,
    "SO-TP": 26,
    "SO-YT": 27,
    "UBND-PHU-XUAN": 41,
    "UBND-THUAN-HOA": 42,
    "UBND-VY-DA": 43,
    "UBND-KIM-LONG": 44,
    "UBND-AN-CUU": 45,
}

# Share of vehicles at the busiest hour, per local hour 0..23: a motorbike city with sharp
# school/office peaks around 7–8 and 17–18, a lunch dip, and near-empty streets before dawn.
_HOURLY_LEVEL: tuple[float, ...] = (
    0.10, 0.06, 0.04, 0.04, 0.07, 0.20, 0.55, 0.95, 1.00, 0.75, 0.65, 0.70,
    0.60, 0.55, 0.62, 0.70, 0.85, 1.00, 0.92, 0.70, 0.55, 0.42, 0.28, 0.17,
)  # fmt: skip

# Monday..Sunday; weekends lose the commute peak more than the leisure traffic.
_WEEKDAY_FACTOR: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 0.85, 0.7)


def traffic_level(local_hour: float, weekday: int) -> float:
    """Traffic as a share of the peak (0..1] at a local hour of day (0..24) and weekday (0=Mon)."""
    h = local_hour % 24.0
    i = int(h)
    frac = h - i
    # Interpolate between hourly anchors so readings change smoothly, not in hour-long steps.
    level = _HOURLY_LEVEL[i] * (1.0 - frac) + _HOURLY_LEVEL[(i + 1) % 24] * frac
    return level * _WEEKDAY_FACTOR[weekday % 7]
