#!/usr/bin/python3
"""The report page as a person sees it: `axiomatic report` on the toy CNN, then index.html opened
in headless chromium through the DevTools protocol (Python's standard library only). Checks that
every <img> decoded (naturalWidth > 0), every inline SVG has a size, the console logged no error
and no script exception, and a screenshot is not blank (many colours, not one).

Usage: report_page_test.py --cli build/cli/axiomatic --chromium /usr/bin/chromium --source DIR
"""
import argparse
import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib


def write_npy(path, shape, values):
    """A float64 .npy, C order (format version 1.0)."""
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (%s), }" % "".join(f"{d}, " for d in shape)
    header += " " * (63 - (len(header) + 10) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%dd" % len(values), *values))


class DevTools:
    """A WebSocket client (RFC 6455, text frames) speaking the DevTools protocol to one page."""

    def __init__(self, url):
        host, rest = url[len("ws://"):].split("/", 1)
        name, port = host.split(":")
        self.sock = socket.create_connection((name, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        if b" 101 " not in response.split(b"\r\n")[0]:
            raise RuntimeError("DevTools refused the WebSocket: " + response.decode(errors="replace"))
        self.next_id = 0
        self.events = []

    def _read(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("DevTools closed the connection")
            data += chunk
        return data

    def _receive(self):
        message = b""
        while True:
            first, second = self._read(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(length)
            if first & 0x0F == 0x9:  # ping: ignored (the page answers nothing we need)
                continue
            message += payload
            if first & 0x80:  # FIN
                return json.loads(message)

    def send(self, method, **params):
        self.next_id += 1
        payload = json.dumps({"id": self.next_id, "method": method, "params": params}).encode()
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
        while True:
            message = self._receive()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event, seconds=60):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if any(e.get("method") == event for e in self.events):
                return
            self.events.append(self._receive())
        raise RuntimeError(f"no {event} within {seconds} s")


def png_pixels(data):
    """Decodes an 8-bit, non-interlaced RGB or RGBA PNG: (width, height, channels, rows of bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat = 8, b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, f"unexpected PNG: depth {depth}, colour {colour}"
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    channels = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * channels, [], bytearray(width * channels)
    # each row: one filter byte, then the filtered bytes (PNG spec, 9.2)
    for y in range(height):
        kind, row = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = row[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if kind == 1:
                row[i] = (row[i] + a) & 255
            elif kind == 2:
                row[i] = (row[i] + b) & 255
            elif kind == 3:
                row[i] = (row[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                row[i] = (row[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(row))
        previous = row
    return width, height, channels, rows


def make_report(cli, source, work):
    """The report of the toy CNN on two 4 x 4 images, with a data set: every figure present."""
    images = []
    for name, values in (("one", [i / 16 for i in range(16)]), ("cab", [((7 * i) % 16) / 16 for i in range(16)])):
        images.append(os.path.join(work, name + ".npy"))
        write_npy(images[-1], (1, 4, 4), values)
    data = os.path.join(work, "data.npy")
    write_npy(data, (6, 1, 4, 4), [((5 * i + 3) % 11) / 11 for i in range(96)])
    out = os.path.join(work, "report")
    run = subprocess.run([cli, "report", "--model", os.path.join(source, "examples/toys/tiny_cnn.json"), "--images",
                          *images, "--data", data, "--out", out], capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        sys.exit(f"axiomatic report failed ({run.returncode}): {run.stderr}")
    page = os.path.join(out, "index.html")
    if page not in run.stdout:
        sys.exit(f"the report did not print the page's path {page}: {run.stdout}")
    return page


def stop(browser):
    """Ends chromium and every process it started (they write into the profile until they end)."""
    try:
        os.killpg(browser.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    browser.wait()


def open_page(chromium, page, work):
    profile = os.path.join(work, "profile")
    browser = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--hide-scrollbars", "--window-size=1280,900", "--remote-debugging-port=0",
                                f"--user-data-dir={profile}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # its own process group: stop() ends its helpers too
    port_file = os.path.join(profile, "DevToolsActivePort")
    deadline = time.time() + 60
    while not (os.path.exists(port_file) and open(port_file).read().strip()):
        if time.time() > deadline or browser.poll() is not None:
            stop(browser)
            sys.exit("chromium did not start its DevTools server")
        time.sleep(0.1)
    port = open(port_file).read().split()[0]
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
    url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
    return browser, DevTools(url)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cli", required=True)
    parser.add_argument("--chromium", required=True)
    parser.add_argument("--source", required=True)
    args = parser.parse_args()
    failures = []
    # a helper of chromium's that outlives the group's end may still leave a file behind
    with tempfile.TemporaryDirectory(prefix="axiomatic_page_", ignore_cleanup_errors=True) as work:
        page = make_report(args.cli, args.source, work)
        browser, tools = open_page(args.chromium, page, work)
        try:
            for domain in ("Page", "Runtime", "Log"):
                tools.send(domain + ".enable")
            tools.send("Page.navigate", url="file://" + os.path.abspath(page))
            tools.wait_for("Page.loadEventFired")
            probe = ("JSON.stringify({images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt]),"
                     " svgs: Array.from(document.querySelectorAll('svg')).map(s => s.getBoundingClientRect().width),"
                     " height: document.documentElement.scrollHeight})")
            seen = json.loads(tools.send("Runtime.evaluate", expression=probe, returnByValue=True)["result"]["value"])
            shot = base64.b64decode(tools.send("Page.captureScreenshot", format="png",
                                               clip={"x": 0, "y": 0, "width": 1280, "height": 900, "scale": 0.5})["data"])
            tools.send("Runtime.evaluate", expression="1")  # collects any event still on its way
        finally:
            stop(browser)

    # every picture decoded; two per image at least, and the plots laid out
    if len(seen["images"]) < 2 * 25:
        failures.append(f"the page has {len(seen['images'])} images, expected 50")
    for complete, width, alt in seen["images"]:
        if not complete or width <= 0:
            failures.append(f"image '{alt}' did not decode (complete {complete}, naturalWidth {width})")
    if len(seen["svgs"]) != 4 or min(seen["svgs"], default=0) <= 0:
        failures.append(f"inline SVG plots: widths {seen['svgs']}, expected 4 with a size")
    # nothing went wrong in the console
    for event in tools.events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            failures.append("console error: " + json.dumps(params.get("args")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            failures.append("console error: " + params["entry"].get("text", ""))
        elif method == "Runtime.exceptionThrown":
            failures.append("exception: " + json.dumps(params.get("exceptionDetails")))
    # the screenshot is a picture: many colours, and not one colour almost everywhere
    width, height, channels, rows = png_pixels(shot)
    counts = {}
    for row in rows:
        for x in range(0, len(row), channels):
            pixel = row[x:x + 3]
            counts[pixel] = counts.get(pixel, 0) + 1
    commonest = max(counts.values()) / (width * height)
    if len(counts) < 32 or commonest > 0.97:
        failures.append(f"the screenshot looks blank: {len(counts)} colours, the commonest on {commonest:.1%} of it")
    print(f"{len(seen['images'])} images, {len(seen['svgs'])} plots, screenshot {width}x{height} with "
          f"{len(counts)} colours (commonest {commonest:.1%}), {len(tools.events)} DevTools events")
    for failure in failures:
        print("FAILED:", failure)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
