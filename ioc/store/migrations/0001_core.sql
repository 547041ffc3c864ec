-- Core tables: keys, reference data, field reports.

CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prefix      text NOT NULL UNIQUE,
    secret_hash text NOT NULL,
    role        text NOT NULL CHECK (role IN ('source', 'operator', 'agency', 'leader', 'admin')),
    source      text,
    agency      text,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK (role <> 'source' OR source IS NOT NULL),
    CHECK (role <> 'agency' OR agency IS NOT NULL)
);

CREATE TABLE categories (
    code                   text PRIMARY KEY,
    name_vi                text NOT NULL,
    default_deadline_hours integer NOT NULL CHECK (default_deadline_hours > 0)
);

INSERT INTO categories (code, name_vi, default_deadline_hours) VALUES
    ('giao_thong',        'Giao thông',                                  24),
    ('ha_tang',           'Hạ tầng đô thị (đường, vỉa hè, cầu cống)',    72),
    ('chieu_sang',        'Chiếu sáng công cộng',                        48),
    ('cap_thoat_nuoc',    'Cấp thoát nước, ngập úng',                    24),
    ('moi_truong',        'Môi trường, rác thải',                        48),
    ('cay_xanh',          'Cây xanh',                                    48),
    ('trat_tu_do_thi',    'Trật tự đô thị, lấn chiếm lòng lề đường',     72),
    ('xay_dung',          'Xây dựng trái phép, sai phép',               120),
    ('an_ninh_trat_tu',   'An ninh trật tự',                             24),
    ('an_toan_thuc_pham', 'An toàn thực phẩm',                           72),
    ('khac',              'Khác',                                       120);

CREATE TABLE sensors (
    sensor_id     text PRIMARY KEY,
    name          text NOT NULL DEFAULT '',
    lon           double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    lat           double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- Field reports are state (they become tickets), not a stream: a plain table, unique per source.
CREATE TABLE field_reports (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL,
    external_id text NOT NULL,
    category    text NOT NULL REFERENCES categories (code),
    description text NOT NULL,
    lon         double precision NOT NULL,
    lat         double precision NOT NULL,
    occurred_at timestamptz NOT NULL,
    address     text,
    reporter    jsonb,
    media_urls  text[] NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, external_id)
);
CREATE INDEX field_reports_occurred_brin ON field_reports USING brin (occurred_at);
CREATE INDEX field_reports_category_time ON field_reports (category, occurred_at);

-- Dossier events are time-partitioned, and a partitioned table's unique keys must contain the
-- time column; this table carries the true (source, external_id) identity instead.
CREATE TABLE dossier_event_keys (
    source      text NOT NULL,
    external_id text NOT NULL,
    PRIMARY KEY (source, external_id)
);
