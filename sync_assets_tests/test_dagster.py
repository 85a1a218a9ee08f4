import time, json
import yaml
from dagster import AssetKey, DagsterInstance, build_sensor_context, DagsterRun, DagsterRunStatus
from sync_assets.config import parse_config
from sync_assets.definitions import build_definitions
from sync_assets.resources import ProductionDatabase
from sync_assets.changes import change_counters
from sync_assets_tests import cruise


def test_explore(cruise_pair, tmp_path):
    cfg = parse_config(yaml.safe_load(cruise.CONFIG_YAML))
    defs = build_definitions(cruise_pair.prod_url, cruise_pair.staging_url, cfg, cache_dir=tmp_path)
    sensor = defs.resolve_sensor_def("production_changes")
    inst = DagsterInstance.ephemeral()
    res = {"production": ProductionDatabase(url=cruise_pair.prod_url)}
    ctx = build_sensor_context(instance=inst, resources=res)
    r = sensor(ctx)
    print(type(r), r, ctx.cursor)
    cur = r.cursor
    ctx = build_sensor_context(cursor=cur, instance=inst, resources=res)
    r = sensor(ctx)
    print(type(r), r)
    t = time.monotonic()
    with cruise_pair.prod() as conn:
        conn.execute("UPDATE ports SET tz = 'Europe/Oslo' WHERE code = 'P01'")
        conn.execute("INSERT INTO users (email) VALUES ('x@example.com')")
    for i in range(100):
        with cruise_pair.source.connect() as c:
            cc = change_counters(c, ("public",))
        if (
            cc["public.ports"] != json.loads(cur)["public.ports"]
            and cc["public.users"] != json.loads(cur)["public.users"]
        ):
            break
        time.sleep(0.05)
    print("flushed after", time.monotonic() - t, i)
    ctx = build_sensor_context(cursor=cur, instance=inst, resources=res)
    r = sensor(ctx)
    print(type(r), r)
    run = inst.add_run(DagsterRun(job_name="sync_job", status=DagsterRunStatus.STARTED))
    ctx = build_sensor_context(cursor=cur, instance=inst, resources=res)
    r = sensor(ctx)
    print(type(r), r, ctx.cursor == cur)
    d = sensor.evaluate_tick(build_sensor_context(cursor=cur, instance=inst, resources=res))
    print(d)
