from release.errors import ConfigError
from release.redact import redact, redact_obj, register_secret


def test_uri_password_is_masked() -> None:
    s = redact("connect postgresql://ro:s3cr3tpw@db.example:5432/app failed")
    assert "s3cr3tpw" not in s and "postgresql://ro:***@db.example" in s


def test_keyword_password_is_masked() -> None:
    for text in ("host=db password=s3cr3tpw user=ro", "password='s3 cr3t' host=x", "PASSWORD = s3cr3tpw"):
        assert "s3cr3t" not in redact(text)


def test_query_password_is_masked() -> None:
    assert "s3cr3tpw" not in redact("postgresql:///app?user=ro&password=s3cr3tpw&sslmode=require")


def test_registered_secret_masked_anywhere() -> None:
    register_secret("h0rse-battery")
    assert redact("the value h0rse-battery leaked") == "the value *** leaked"
    assert redact_obj({"a": ["x h0rse-battery"]}) == {"a": ["x ***"]}


def test_errors_are_redacted_at_construction() -> None:
    e = ConfigError("bad dsn postgresql://u:pw12345@h/db", hint="password=pw12345", detail="pw12345 postgresql://u:pw12345@h")
    assert "pw12345" not in e.message + e.hint + e.detail + str(e)
