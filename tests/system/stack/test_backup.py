"""Backups of what the event log cannot rebuild, drilled: a Postgres cluster of its own with
kchat's schema archives its WAL into the stack's MinIO through `kchatctl wal-push`; `kchatctl
pg-backup` takes a base backup and the key files; accounts are written before and after a
moment T; the cluster is lost; `kchatctl pg-restore` brings back the newest backup that ended
before T and Postgres replays the archive (`kchatctl wal-fetch`) up to T: the accounts
written before T are there, the later one is not, and the key files are byte for byte the
ones backed up. The archive's rules are checked on their own: a WAL file is never overwritten
with other bytes, a missing one is exit status 1, and a restore never writes into a folder
that holds something."""
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from kchat_testkit.api import minio, s3_env, s3_where
from kchat_testkit.http import free_port, wait_until
from kchat_testkit.stack import BUILD, ROOT

PGBIN = max(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
AS_ROOT = os.geteuid() == 0


def store_args(prefix):
    return [*s3_where(), f"--backup-prefix={prefix}"]


def as_pg(cmd, check=True, **kw):
    """Runs cmd as the owner of the clusters (Postgres will not run as root)."""
    if AS_ROOT:
        cmd = ["runuser", "-u", "postgres", "--", *map(str, cmd)]
    return subprocess.run([str(c) for c in cmd], check=check, capture_output=True, text=True,
                          **kw)


class Drill:
    """A folder Postgres' user can reach (the checkout may lie below one it cannot), with a
    copy of kchatctl for the archive and restore commands."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="kchat-pitr-", dir="/var/tmp"))
        os.chmod(self.dir, 0o755)
        self.ctl = self.dir / "kchatctl"
        shutil.copy(BUILD / "ctl" / "kchatctl", self.ctl)
        os.chmod(self.ctl, 0o755)
        if AS_ROOT:
            shutil.chown(self.dir, "postgres")
        self.prefix = f"drill-{uuid.uuid4().hex[:12]}/"
        self.port = free_port()
        self.env = s3_env()
        self.running = []

    def pg_ctl(self, data, *args, check=True):
        return as_pg([PGBIN / "pg_ctl", "-D", data, *args], check=check, env=self.env)

    def start(self, data):
        self.running.append(data)
        log = self.dir / f"{data.name}.log"
        r = self.pg_ctl(data, "-l", log, "-w", "-t", "120", "start", check=False)
        assert r.returncode == 0, (r.stderr, log.read_text()[-3000:] if log.exists() else "")

    def stop(self, data, mode="fast"):
        self.pg_ctl(data, "-m", mode, "-w", "stop", check=False)
        if data in self.running:
            self.running.remove(data)

    def dsn(self, db="kchat"):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={db} sslmode=disable"

    def sql(self, q, db="kchat"):
        out = subprocess.run(["psql", "-X", "-qAt", "-v", "ON_ERROR_STOP=1", self.dsn(db),
                              "-c", q], check=True, capture_output=True, text=True).stdout
        return out.strip()

    def ctl_run(self, *args, check=True, as_owner=False):
        cmd = [self.ctl, *args, *store_args(self.prefix)]
        if as_owner:
            r = as_pg(cmd, check=False, env=self.env)
        else:
            r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                               env=self.env)
        if check:
            assert r.returncode == 0, (args, r.stdout, r.stderr)
        return r

    def close(self):
        for data in list(self.running):
            self.stop(data, "immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def add_user(d, name):
    d.sql(f"INSERT INTO users (user_id, username, username_key) "
          f"VALUES ('u_{name}', '{name}', '{name}')")


def test_a_point_in_time_restore_brings_back_accounts_and_keys_up_to_the_moment():
    d = Drill()
    try:
        primary = d.dir / "primary"
        as_pg([PGBIN / "initdb", "-D", primary, "-U", "postgres", "--auth=trust", "-E", "UTF8",
               "--locale=C.UTF-8"])
        archive = " ".join([str(d.ctl), "wal-push", "--wal-path=%p", "--wal-name=%f",
                            *store_args(d.prefix)])
        with open(primary / "postgresql.conf", "a") as f:
            f.write(f"\nport = {d.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{d.dir}'\n"
                    f"archive_mode = on\narchive_command = '{archive}'\n")
        d.start(primary)
        d.sql("CREATE DATABASE kchat", db="postgres")
        r = subprocess.run([str(BUILD / "ctl" / "kchatctl"), "migrate", f"--pg-dsn={d.dsn()}",
                            f"--migrations-dir={ROOT / 'db' / 'migrations'}"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

        # the keys the API and the notifier sign with, kept beside the database
        keys = d.dir / "keys"
        keys.mkdir()
        (keys / "jwt-private.pem").write_bytes(os.urandom(1700))
        (keys / "vapid-private.pem").write_bytes(os.urandom(240))

        add_user(d, "before_backup")
        r = d.ctl_run("pg-backup", f"--pg-dsn={d.dsn()}", f"--pg-bin-dir={PGBIN}",
                      f"--backup-work-dir={d.dir}",
                      f"--backup-files={keys / 'jwt-private.pem'},{keys / 'vapid-private.pem'}")
        label = re.search(r"backup (\d{8}T\d{6}Z) whole", r.stdout).group(1)

        add_user(d, "after_backup")
        time.sleep(1.1)  # T falls strictly between two commits
        target = d.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
                       "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")
        time.sleep(1.1)
        add_user(d, "after_target")
        # the WAL of all three is archived; then the primary is lost
        wal = d.sql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        d.sql("SELECT pg_switch_wal()")
        wait_until(lambda: d.sql("SELECT coalesce(last_archived_wal, '') FROM "
                                 "pg_stat_archiver") >= wal, "the WAL archived", timeout=60)
        d.stop(primary, "immediate")
        shutil.rmtree(primary)

        restored = d.dir / "restored"
        r = d.ctl_run("pg-restore", f"--pgdata={restored}", f"--target-time={target}",
                      f"--restore-files-dir={d.dir / 'restored-keys'}", as_owner=True)
        assert f"restoring backup {label}" in r.stdout, r.stdout
        d.start(restored)
        wait_until(lambda: d.sql("SELECT pg_is_in_recovery()") == "f", "recovery to the target",
                   timeout=120)
        names = d.sql("SELECT string_agg(username, ',' ORDER BY username) FROM users")
        assert names == "after_backup,before_backup", names
        # a new timeline begins at the target, and the restored cluster archives it
        s3 = minio()

        def archived(key):
            return s3.list_objects_v2(Bucket=os.environ["KCHAT_S3_BUCKET"],
                                      Prefix=d.prefix + key).get("KeyCount", 0) > 0
        wait_until(lambda: archived("wal/00000002.history"), "the new timeline archived",
                   timeout=60)
        assert archived(f"base/{label}/backup.json") and archived(f"base/{label}/base.tar.gz.00000")
        # the restored keys are those backed up, readable by their owner alone
        for k in ("jwt-private.pem", "vapid-private.pem"):
            assert (d.dir / "restored-keys" / k).read_bytes() == (keys / k).read_bytes()
            assert (d.dir / "restored-keys" / k).stat().st_mode & 0o077 == 0
        # the restored cluster works on: it takes writes
        add_user(d, "after_restore")
        assert d.sql("SELECT count(*) FROM users") == "3"

        # a restore never writes into a folder that holds something
        r = d.ctl_run("pg-restore", f"--pgdata={restored}", check=False, as_owner=True)
        assert r.returncode == 1 and "must be an empty folder" in r.stderr, r.stderr
        # nor starts from a backup that ended after the target
        r = d.ctl_run("pg-restore", f"--pgdata={d.dir / 'too-early'}",
                      "--target-time=2001-01-01T00:00:00Z", check=False, as_owner=True)
        assert r.returncode == 1 and "no whole backup" in r.stderr, r.stderr
        r = d.ctl_run("pg-restore", f"--pgdata={d.dir / 'bad-time'}", "--target-time=yesterday",
                      check=False, as_owner=True)
        assert r.returncode == 2 and "UTC time" in r.stderr, r.stderr
    finally:
        d.close()


def test_the_archive_keeps_what_it_has_and_says_what_it_lacks():
    d = Drill()
    try:
        seg, other, back = d.dir / "seg", d.dir / "other", d.dir / "back"
        seg.write_bytes(os.urandom(200_000))
        other.write_bytes(os.urandom(200_000))
        name = "000000010000000000000007"
        d.ctl_run("wal-push", f"--wal-path={seg}", f"--wal-name={name}")
        # Postgres may push a file again after a crash: the same bytes are fine
        d.ctl_run("wal-push", f"--wal-path={seg}", f"--wal-name={name}")
        r = d.ctl_run("wal-push", f"--wal-path={other}", f"--wal-name={name}", check=False)
        assert r.returncode == 1 and "other contents" in r.stderr, r.stderr
        d.ctl_run("wal-fetch", f"--wal-path={back}", f"--wal-name={name}")
        assert back.read_bytes() == seg.read_bytes()
        # a file the archive lacks: exit 1, and nothing left behind
        r = d.ctl_run("wal-fetch", f"--wal-path={d.dir / 'none'}",
                      "--wal-name=000000020000000000000001", check=False)
        assert r.returncode == 1 and r.stderr == "", r.stderr
        assert sorted(p.name for p in d.dir.iterdir()) == ["back", "kchatctl", "other", "seg"]
        # names are plain file names, never paths into the bucket
        r = d.ctl_run("wal-fetch", f"--wal-path={back}", "--wal-name=../base/x", check=False)
        assert r.returncode == 2 and "plain file name" in r.stderr, r.stderr
    finally:
        d.close()
