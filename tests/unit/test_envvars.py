"""`cliproxy env` output."""

from cliproxy.scripts.envvars import BUNDLE_NAME, env_lines


def test_env_lines_before_and_after_the_ca_exists(tmp_path):
    lines = env_lines("127.0.0.1:9999", "127.0.0.1:8888", tmp_path)
    text = "\n".join(lines)
    assert "export OPENAI_BASE_URL=http://127.0.0.1:9999/v1" in text
    assert "export ANTHROPIC_BASE_URL=http://127.0.0.1:9999" in text and "export AMP_URL=http://127.0.0.1:9999" in text
    assert "export HTTPS_PROXY=http://127.0.0.1:8888" in text and "does not exist yet" in text
    (tmp_path / "mitmproxy-ca-cert.pem").write_text("-----BEGIN CERTIFICATE-----\nMITM\n-----END CERTIFICATE-----\n")
    text = "\n".join(env_lines("127.0.0.1:9999", "127.0.0.1:8888", tmp_path))
    bundle = tmp_path / BUNDLE_NAME
    assert f"export SSL_CERT_FILE={bundle}" in text and f"export CODEX_CA_CERTIFICATE={bundle}" in text
    assert bundle.read_text().rstrip().endswith("MITM\n-----END CERTIFICATE-----") and bundle.stat().st_size > 10_000
    assert f"export NODE_EXTRA_CA_CERTS={tmp_path / 'mitmproxy-ca-cert.pem'}" in text
