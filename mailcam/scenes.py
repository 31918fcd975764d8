"""Synthetic mailbox-interior photos with ground truth, for the simulator and the vision benchmarks.

``render(kind, seed, light=1.0) -> bytes`` draws a deterministic JPEG of the inside of a mailbox as the
ESP32-CAM sees it (wide angle, grey metal walls, uneven light from the slot), with:

    empty     nothing inside                     mail: False
    letters   1-4 envelopes                      mail: True
    package   a cardboard parcel (+ maybe a letter)  mail: True
    magazine  a glossy magazine                  mail: True
    dark      an empty box at night (very dim)   mail: False
    blurry    letters, out of focus / fogged lens  mail: True

``truth(kind, seed)`` gives the label without rendering.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFilter

KINDS: tuple[str, ...] = ("empty", "letters", "package", "magazine", "dark", "blurry")
MAIL_KINDS: tuple[str, ...] = ("letters", "package", "magazine")
SIZE = (640, 480)


@dataclass(frozen=True)
class Truth:
    kind: str
    mail: bool
    items: list[str] = field(default_factory=list)


def truth(kind: str, seed: int = 0) -> Truth:
    """The ground truth of ``render(kind, seed)``."""
    if kind not in KINDS:
        raise ValueError(f"unknown scene kind {kind!r}; one of {KINDS}")
    rng = random.Random(f"{kind}:{seed}")
    if kind in ("empty", "dark"):
        return Truth(kind, False, [])
    if kind in ("letters", "blurry"):
        return Truth(kind, True, ["letter"] * rng.randint(1, 4))
    if kind == "package":
        return Truth(kind, True, ["package"] + (["letter"] if rng.random() < 0.5 else []))
    return Truth(kind, True, ["magazine"])


def _interior(rng: random.Random, light: float) -> Image.Image:
    w, h = SIZE
    img = Image.new("RGB", SIZE)
    d = ImageDraw.Draw(img)
    base = rng.randint(95, 130)
    for y in range(h):  # light falls from the slot at the top
        v = int(base * (1.15 - 0.5 * y / h))
        d.line([(0, y), (w, y)], fill=(v, v + 3, v + 8))
    back = [(w * 0.22, h * 0.18), (w * 0.78, h * 0.18), (w * 0.78, h * 0.62), (w * 0.22, h * 0.62)]
    d.polygon(back, fill=(base - 30, base - 27, base - 22))
    d.polygon([(0, h), (w, h), back[2], back[3]], fill=(base - 10, base - 8, base - 4))  # floor
    for x in range(0, w, 40):  # corrugation of the metal
        d.line([(x, 0), (x, int(h * 0.2))], fill=(base + 15,) * 3, width=2)
    return img


def _paste_rotated(img: Image.Image, item: Image.Image, xy: tuple[int, int], angle: float) -> None:
    rotated = item.convert("RGBA").rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    img.paste(rotated, xy, rotated)


def _envelope(rng: random.Random) -> Image.Image:
    w, h = rng.randint(170, 240), rng.randint(95, 130)
    tone = rng.choice([(245, 243, 235), (235, 225, 200), (250, 250, 250), (220, 230, 245)])
    env = Image.new("RGB", (w, h), tone)
    d = ImageDraw.Draw(env)
    d.rectangle([w - 38, 8, w - 10, 40], fill=rng.choice([(200, 40, 40), (40, 90, 180), (40, 140, 60)]))
    for i in range(3):
        y = h // 2 + i * 12
        d.line([(w // 3, y), (w // 3 + rng.randint(60, 100), y)], fill=(40, 40, 60), width=3)
    d.rectangle([0, 0, w - 1, h - 1], outline=(150, 150, 140))
    return env


def _package(rng: random.Random) -> Image.Image:
    w, h = rng.randint(260, 340), rng.randint(170, 220)
    box = Image.new("RGB", (w, h), (rng.randint(160, 190), rng.randint(115, 135), rng.randint(70, 90)))
    d = ImageDraw.Draw(box)
    d.rectangle([0, h // 2 - 14, w, h // 2 + 14], fill=(205, 180, 130))  # tape
    d.rectangle([20, 20, 120, 70], fill=(250, 250, 250))  # shipping label
    for i in range(3):
        d.line([(28, 32 + i * 12), (110, 32 + i * 12)], fill=(30, 30, 30), width=2)
    d.rectangle([0, 0, w - 1, h - 1], outline=(110, 80, 50), width=3)
    return box


def _magazine(rng: random.Random) -> Image.Image:
    w, h = rng.randint(200, 240), rng.randint(270, 310)
    cover = Image.new("RGB", (w, h), tuple(rng.randint(40, 230) for _ in range(3)))
    d = ImageDraw.Draw(cover)
    d.rectangle([0, 0, w, 50], fill=tuple(rng.randint(0, 255) for _ in range(3)))
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    d.ellipse([w // 4, h // 3, 3 * w // 4, 2 * h // 3 + 40], fill=colour)
    for i in range(4):
        d.line([(15, h - 80 + i * 15), (w - 40, h - 80 + i * 15)], fill=(255, 255, 255), width=4)
    return cover


def _noise(img: Image.Image, rng: random.Random, amount: int) -> Image.Image:
    grain = Image.frombytes("L", SIZE, rng.randbytes(SIZE[0] * SIZE[1]))  # seeded sensor noise
    grain = grain.point(lambda v: 128 + (v - 128) * amount // 128).convert("RGB")
    return Image.blend(img, grain, 0.08 + rng.random() * 0.04)


def render(kind: str, seed: int = 0, light: float = 1.0, quality: int = 80) -> bytes:
    """A deterministic JPEG of scene ``kind``; ``light`` scales brightness (1.0 day, 0.2 dusk)."""
    t = truth(kind, seed)
    rng = random.Random(f"{kind}:{seed}:draw")
    img = _interior(rng, light)
    w, h = SIZE
    for item in t.items:
        art = {"letter": _envelope, "package": _package, "magazine": _magazine}[item](rng)
        x = rng.randint(20, max(21, w - art.width - 20))
        y = rng.randint(int(h * 0.45), max(int(h * 0.45) + 1, h - art.height - 10))
        _paste_rotated(img, art, (x, y), rng.uniform(-25, 25))
    img = _noise(img, rng, 40)
    if kind == "blurry":
        img = img.filter(ImageFilter.GaussianBlur(7))
    level = light * (0.12 if kind == "dark" else 1.0)
    if level != 1.0:
        img = img.point(lambda v: max(0, min(255, int(v * level))))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()
