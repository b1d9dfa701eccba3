"""The catalogue: every named scenario, what the user did and what doctor must report, and
`build`, which builds one into an empty folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .broken_config import (
    FM17_BACKENDS,
    fm17_percent_in_ini_url,
    fm20_env_import_error,
    fm21_missing_alembic_ini,
    fm21_relative_script_location,
    fm23_target_metadata_none,
    fm32_compare_type_off,
    fm42_sqlite_without_batch,
)
from .broken_history import (
    DDD444_IMPORT,
    DDD444_SYNTAX,
    fm01_deleted_head_revision,
    fm01_regenerated_folder,
    fm02_two_heads,
    fm04_duplicate_revision_id,
    fm04_stray_file,
    fm05_deleted_intermediate,
    fm06_cycle,
    fm11_versions_missing,
    fm11_versions_missing_fresh_db,
    fm25_empty_revision,
    fm27_import_error,
    fm27_syntax_error,
    fm46_history_from_scratch,
    fm47_noop_downgrade,
)
from .builders import BBB, CCC, VERSIONS, backend_of, base_project
from .drifted_database import (
    DDD444_HALF,
    fm03_behind_head,
    fm08_version_num_too_short,
    fm08_version_rows_without_pk,
    fm09_create_all,
    fm09_empty_version_table,
    fm13_half_applied,
    fm13_half_applied_corrected,
    fm15_manual_alter,
    fm15_wrong_stamp_head,
    fm24_model_removed,
    fm24_orphan_table,
    fm45_sqlite_junk,
)
from .unsafe_pending import (
    DDD444_DROP,
    DDD444_NULLABLE,
    DDD444_RENAME,
    DDD444_SEVERAL,
    DDD444_SHORTER,
    DDD444_SLUG,
    DDD444_STATUS,
    DDD444_UNIQUE_NAME,
    DDD444_UNNAMED,
    fm13_several_ddl,
    fm24_pending_drop_table,
    fm26_rename_as_drop_add,
    fm32_type_change_too_short,
    fm34_not_null_on_rows,
    fm35_default_evaluated_once,
    fm35_unique_on_duplicates,
    fm38_unnamed_constraint,
    fm39_string_without_length,
    fm42_alter_outside_batch,
)

#: Scenarios whose doctor run must take the URL from alembic.ini (no --url, no DATABASE_URL).
URL_FROM_INI = frozenset({"fm17_percent_in_ini_url"})


def _not_set(root: Path, url: str) -> None:
    raise NotImplementedError("this scenario has no builder")


@dataclass(frozen=True)
class Scenario:
    """One broken situation: what the user did, and what doctor must say about it."""

    name: str
    fm: str
    description: str
    expect: tuple[tuple[str, str | None], ...]
    backends: tuple[str, ...] = ("sqlite", "mariadb")
    build: Callable[[Path, str], None] = _not_set


def _healthy(root: Path, url: str) -> None:
    base_project(root, url)


def _v(name: str) -> str:
    return f"{VERSIONS}/{name}"


def _absolute(builder: Callable[[Path, str], None]) -> Callable[[Path, str], None]:
    """The builder on the absolute root (sys.path and alembic.ini must not depend on cwd)."""
    def run(root: Path, url: str) -> None:
        builder(Path(root).resolve(), url)

    run.__name__ = run.__qualname__ = builder.__name__
    run.__doc__ = builder.__doc__
    return run


_ALL = (
    Scenario("healthy", "-",
             "Nothing wrong: three revisions applied, models equal head, rows in both tables.",
             (), build=_absolute(_healthy)),
    Scenario("fm01_deleted_head_revision", "FM01",
             "Deleted the head revision file ccc333 after the database had been upgraded to it.",
             (("AR302", None),), build=_absolute(fm01_deleted_head_revision)),
    Scenario("fm01_regenerated_folder", "FM01, FM12",
             "Deleted alembic/ and alembic.ini and regenerated them (alembic init, URL and "
             "models sed in, revision --autogenerate against an empty dev database): one new "
             "random-id revision, while the database still records ccc333.",
             (("AR302", None),), build=_absolute(fm01_regenerated_folder)),
    Scenario("fm02_two_heads", "FM02",
             "Two branches each added a revision on aaa111 (bbb222 and ccc333), both merged and "
             "applied with `upgrade heads`.",
             (("AR205", None),), build=_absolute(fm02_two_heads)),
    Scenario("fm03_behind_head", "FM03",
             "Pulled revision ccc333 but upgraded only to bbb222.",
             (("AR304", None),), build=_absolute(fm03_behind_head)),
    Scenario("fm04_duplicate_revision_id", "FM04",
             "Copied bbb222_create_post.py to bbb222_create_post_copy.py: revision id bbb222 is "
             "defined twice.",
             (("AR202", _v("bbb222_create_post")),), build=_absolute(fm04_duplicate_revision_id)),
    Scenario("fm04_stray_file_in_versions", "FM04",
             "Put a helpers.py module (no revision id) into alembic/versions/.",
             (("AR206", _v("helpers.py")),), build=_absolute(fm04_stray_file)),
    Scenario("fm05_deleted_intermediate_revision", "FM05",
             "Deleted the intermediate revision file bbb222 that ccc333 names as down_revision.",
             (("AR203", _v(CCC)),), build=_absolute(fm05_deleted_intermediate)),
    Scenario("fm06_revision_cycle", "FM06",
             "Relinked aaa111 by hand to down_revision 'bbb222', closing a loop "
             "aaa111 -> bbb222 -> aaa111.",
             (("AR204", None),), build=_absolute(fm06_cycle)),
    Scenario("fm08_version_rows_without_pk", "FM08",
             "Recreated alembic_version by hand without a primary key, and a restore run three "
             "times left three identical 'bbb222' rows (ccc333 is pending).",
             (("AR303", "alembic_version"), ("AR307", "alembic_version")),
             build=_absolute(fm08_version_rows_without_pk)),
    Scenario("fm08_version_num_too_short", "FM08",
             "Narrowed alembic_version.version_num to VARCHAR(8) by hand, while a pending "
             "revision has the 12-character id 4d2f0a9c1b7e.",
             (("AR305", "alembic_version"),), backends=("mariadb",),
             build=_absolute(fm08_version_num_too_short)),
    Scenario("fm09_create_all_without_alembic", "FM09",
             "The app built the schema with Base.metadata.create_all() and never ran Alembic: "
             "tables with rows, no alembic_version.",
             (("AR301", None),), build=_absolute(fm09_create_all)),
    Scenario("fm09_empty_version_table", "FM09",
             "Deleted the row of alembic_version to get 'unstuck'; the schema is at head.",
             (("AR306", "alembic_version"),), build=_absolute(fm09_empty_version_table)),
    Scenario("fm11_versions_dir_missing", "FM11",
             "The image was built without alembic/versions/ (ignored), against a database at "
             "ccc333.",
             (("AR112", None),), build=_absolute(fm11_versions_missing)),
    Scenario("fm11_versions_dir_missing_fresh_db", "FM11",
             "A fresh clone without alembic/versions/ ran `alembic upgrade head` on an empty "
             "database: it succeeded and created only alembic_version.",
             (("AR112", None),), build=_absolute(fm11_versions_missing_fresh_db)),
    Scenario("fm13_half_applied_revision", "FM13",
             "Upgraded to ddd444, which adds author.bio and post.summary and then fails creating "
             "an index on a misspelt column; MariaDB kept the two columns, alembic_version "
             "says ccc333.",
             (("AR402", _v(DDD444_HALF)),), backends=("mariadb",),
             build=_absolute(fm13_half_applied)),
    Scenario("fm13_half_applied_then_corrected", "FM13",
             "As fm13_half_applied_revision, then corrected the misspelt column in ddd444: "
             "`alembic upgrade head` now fails at once on the column the failed run added.",
             (("AR402", _v(DDD444_HALF)),), backends=("mariadb",),
             build=_absolute(fm13_half_applied_corrected)),
    Scenario("fm15_wrong_stamp_head", "FM15",
             "Ran `alembic stamp head` while the schema was at bbb222 (author.email missing).",
             (("AR401", None),), build=_absolute(fm15_wrong_stamp_head)),
    Scenario("fm15_manual_alter", "FM15",
             "Ran `ALTER TABLE author ADD COLUMN x INTEGER` by hand on a database at head.",
             (("AR405", None), ("AR403", "author")), build=_absolute(fm15_manual_alter)),
    Scenario("fm17_percent_in_ini_url", "FM17",
             "Wrote the database URL, percent-encoded, into alembic.ini as sqlalchemy.url "
             "without doubling the '%'.",
             (("AR107", "alembic.ini"),), backends=FM17_BACKENDS,
             build=_absolute(fm17_percent_in_ini_url)),
    Scenario("fm20_env_import_error", "FM20",
             "Added `from app.settings import settings` to env.py, a module the project does "
             "not have.",
             (("AR105", "alembic/env.py"),), build=_absolute(fm20_env_import_error)),
    Scenario("fm21_relative_script_location", "FM21",
             "Wrote `script_location = alembic` (relative to the working directory) in "
             "alembic.ini.",
             (("AR110", "alembic.ini"),), build=_absolute(fm21_relative_script_location)),
    Scenario("fm21_missing_alembic_ini", "FM21",
             "Deleted alembic.ini (not committed) in a project with a database at head.",
             (("AR101", "alembic.ini"),), build=_absolute(fm21_missing_alembic_ini)),
    Scenario("fm23_target_metadata_none", "FM23",
             "Replaced env.py with the stock `alembic init` one (target_metadata = None), the "
             "URL in alembic.ini.",
             (("AR106", "alembic/env.py"),), build=_absolute(fm23_target_metadata_none)),
    Scenario("fm24_model_class_removed", "FM24",
             "Removed the Post model class from app/models.py while the post table (with rows) "
             "stays.",
             (("AR403", "post"),), build=_absolute(fm24_model_removed)),
    Scenario("fm24_orphan_table", "FM24",
             "Created a table legacy_stats with raw SQL, outside the models and the history.",
             (("AR406", "legacy_stats"),), build=_absolute(fm24_orphan_table)),
    Scenario("fm25_empty_revision", "FM25",
             "Autogenerated and applied a revision ddd444 that found no change (upgrade is "
             "`pass`).",
             (("AR207", _v("ddd444_sync_models.py")),), build=_absolute(fm25_empty_revision)),
    Scenario("fm27_revision_syntax_error", "FM27",
             "Wrote a pending revision ddd444 with an unclosed parenthesis.",
             (("AR201", _v(DDD444_SYNTAX)),), build=_absolute(fm27_syntax_error)),
    Scenario("fm27_revision_import_error", "FM27",
             "Wrote a pending revision ddd444 that imports app.fields, a module that no longer "
             "exists.",
             (("AR209", _v(DDD444_IMPORT)),), build=_absolute(fm27_import_error)),
    Scenario("fm32_compare_type_off", "FM32",
             "Set compare_type=False in env.py, then widened Author.name to String(150) in the "
             "models: autogenerate sees no change.",
             (("AR109", "alembic/env.py"), ("AR403", "author")),
             build=_absolute(fm32_compare_type_off)),
    Scenario("fm42_sqlite_without_batch", "FM42",
             "Uses the stock `alembic init` env.py, wired to the models, on SQLite: no "
             "render_as_batch.",
             (("AR108", "alembic/env.py"),), backends=("sqlite",),
             build=_absolute(fm42_sqlite_without_batch)),
    Scenario("fm45_sqlite_junk_values", "FM45",
             "Wrote 'abc' into the INTEGER column post.views and 'yesterday' into the DATETIME "
             "column post.created_at (SQLite stores them).",
             (("AR407", "post.views"), ("AR407", "post.created_at")), backends=("sqlite",),
             build=_absolute(fm45_sqlite_junk)),
    Scenario("fm46_history_cannot_build_empty_db", "FM46",
             "Adopted Alembic on a create_all() database: the base revision ccc333 adds "
             "author.email to a table no revision creates.",
             (("AR404", _v(CCC)),), build=_absolute(fm46_history_from_scratch)),
    Scenario("fm47_noop_downgrade", "FM47",
             "Wrote bbb222, which creates table post, and ccc333, which adds author.email, "
             "each with `downgrade(): pass` (a warning on ccc333, the current revision; a note "
             "on bbb222 below it).",
             (("AR208", _v(BBB)), ("AR208", _v(CCC))), build=_absolute(fm47_noop_downgrade)),
    Scenario("fm24_pending_drop_table", "FM24",
             "Removed the Post model and autogenerated ddd444, which drops table post (3 rows); "
             "not applied yet.",
             (("AR501", _v(DDD444_DROP)),), build=_absolute(fm24_pending_drop_table)),
    Scenario("fm34_not_null_column_on_rows", "FM34",
             "Wrote a pending revision ddd444 adding post.status NOT NULL without a server "
             "default, while post has 3 rows.",
             (("AR502", _v(DDD444_STATUS)),), build=_absolute(fm34_not_null_on_rows)),
    Scenario("fm35_unique_on_duplicates", "FM35",
             "Wrote a pending revision ddd444 with a unique index on author.name while two "
             "authors are named 'Ada Lovelace'.",
             (("AR503", _v(DDD444_UNIQUE_NAME)),), build=_absolute(fm35_unique_on_duplicates)),
    Scenario("fm35_default_evaluated_once", "FM35",
             "Gave Author.public_id `default=str(uuid.uuid4())` in the models (called, not "
             "passed) and wrote the pending revision ddd444 that adds the column.",
             (("AR504", "app/models.py"),), build=_absolute(fm35_default_evaluated_once)),
    Scenario("fm32_type_change_too_short", "FM32",
             "Wrote a pending revision ddd444 shortening author.name to VARCHAR(10) while "
             "'Ada Lovelace' has 12 characters.",
             (("AR505", _v(DDD444_SHORTER)),), backends=("mariadb",),
             build=_absolute(fm32_type_change_too_short)),
    Scenario("fm13_several_ddl_in_one_revision", "FM13",
             "Wrote a pending revision ddd444 that alters two existing tables (author.bio, "
             "post.summary): on MariaDB each statement commits on its own.",
             (("AR506", _v(DDD444_SEVERAL)), ("AR304", "alembic_version")),
             backends=("mariadb",), build=_absolute(fm13_several_ddl)),
    Scenario("fm42_alter_outside_batch", "FM42",
             "Wrote a pending revision ddd444 with a plain op.alter_column (author.name "
             "nullable) on SQLite, outside batch mode.",
             (("AR507", _v(DDD444_NULLABLE)),), backends=("sqlite",),
             build=_absolute(fm42_alter_outside_batch)),
    Scenario("fm26_rename_as_drop_add", "FM26",
             "Renamed Author.name to display_name in the models; the pending revision ddd444 "
             "adds display_name and drops name, as autogenerate writes it.",
             (("AR508", _v(DDD444_RENAME)),), build=_absolute(fm26_rename_as_drop_add)),
    Scenario("fm38_unnamed_constraint", "FM38",
             "Wrote a pending revision ddd444 with op.create_unique_constraint(None, 'author', "
             "['email']) and a downgrade that drops constraint None.",
             (("AR509", _v(DDD444_UNNAMED)), ("AR304", "alembic_version")),
             backends=("mariadb",), build=_absolute(fm38_unnamed_constraint)),
    Scenario("fm39_string_without_length", "FM39",
             "Wrote a pending revision ddd444 adding post.slug as sa.String() without a "
             "length, on MariaDB.",
             (("AR510", _v(DDD444_SLUG)),), backends=("mariadb",),
             build=_absolute(fm39_string_without_length)),
)


SCENARIOS: dict[str, Scenario] = {scenario.name: scenario for scenario in _ALL}


def build(name: str, root: Path, url: str) -> Scenario:
    """Build scenario `name` into the empty folder `root` against the database at `url`."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
    backend = backend_of(url)
    if backend not in scenario.backends:
        raise ValueError(f"scenario {name!r} runs on {', '.join(scenario.backends)}, "
                         f"not on {backend}")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise ValueError(f"{root}: not empty; scenarios are built into an empty folder")
    scenario.build(root, url)
    return scenario
