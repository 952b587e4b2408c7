"""Schemathesis over the whole API on the real services: the OpenAPI schema and the behaviour agree.

Every check is on (server errors, status codes, content types, headers, response schemas,
schema-valid data accepted, schema-invalid data refused); ``tests/schemathesis.toml`` lists the
rejections no schema can state. The budget is bounded (examples, coverage and fuzzing phases,
25 examples an operation) so the run takes under a minute; the seed is printed for a replay.
"""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform_support import ApiServer, bearer, environment, make_tenant, moto_s3, postgres_database, service_env

pytestmark = pytest.mark.timeout(300)
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str]]:
    home = tmp_path_factory.mktemp("schemathesis")
    with postgres_database() as db_url, moto_s3() as endpoint:
        env = service_env(db_url, endpoint, home, "schema", FORENSICS_RATE_LIMIT_PER_MINUTE="0")
        with environment(env):
            server = ApiServer(env, home / "api.log")
            try:
                yield server, make_tenant()[1]
            finally:
                server.stop()


def test_every_operation_conforms_to_the_schema(api: tuple[ApiServer, str], tmp_path: Path) -> None:
    server, key = api
    auth = bearer(key)["Authorization"]
    run = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(CONFIG), "run", f"{server.base}/openapi.json",
         "-H", f"Authorization: {auth}", "--max-examples", "25", "--phases", "examples,coverage,fuzzing", "--no-color"],
        cwd=tmp_path, capture_output=True, text=True, timeout=280,
    )
    summary = run.stdout[-6000:]
    print(summary)
    assert run.returncode == 0, summary
    tested = re.search(r"Tested: (\d+)", summary)
    assert tested and int(tested.group(1)) >= 20, summary  # every operation of the schema was exercised
