"""Varied mailboxes for measuring vision honestly: every box its own, every wake a little different.

``mailcam.scenes`` draws one kind of box (grey metal, light from the slot) for the simulator and
the demo. This generator is for measuring whether the analyser *generalises*: each
``Mailbox(seed)`` is a different box, fixed for its lifetime, and each ``frame(...)`` of it varies
the way a cheap camera in a real box does between wakes:

    per box    shape (front view with back wall and floor, or top-down), wall and floor colours
               (metal, plastic, wood, painted), floor texture (plain, corrugated, wood grain,
               rubber mat, dirty), flash hot spot (place, size, strength), vignetting, slot light
    per wake   exposure ±25 %, white balance, gamma, camera shift and roll (the lid is no tripod),
               sensor noise, JPEG quality 35-85, sometimes a sunlight patch or a shadow through
               the slot, a wet floor, a leaf or a bit of dirt (none of which is mail), night (the
               flash alone lights the box)
    contents   envelopes (white, cream, pastel, brown kraft), a cardboard parcel or a poly mailer,
               a glossy magazine, a flyer, a postcard; lying flat, rotated, overlapping, partly
               out of view

``Truth`` says what is really there. Seeds are the only source of randomness: the same
``(box seed, contents, wake seed)`` always gives the same JPEG. Tune on some box seeds and report
on others (``bench/vision_accuracy.py`` does exactly that).
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ITEM_KINDS = ("letter", "package", "magazine", "flyer", "postcard")


@dataclass(frozen=True)
class Item:
    kind: str  # one of ITEM_KINDS
    seed: int


@dataclass(frozen=True)
class Truth:
    mail: bool
    package: bool
    categories: dict[str, int] = field(default_factory=dict)
    quality: str = "ok"  # ok | too_dark | blurry


@dataclass(frozen=True)
class Wake:
    """How one wake's photo differs from the box's usual look."""

    seed: int
    night: bool = False
    dark: bool = False  # no light at all (the flash failed)
    blurry: bool = False  # fogged lens or motion


def truth_of(items: list[Item], wake: Wake) -> Truth:
    counts = dict.fromkeys(ITEM_KINDS, 0)
    for item in items:
        counts[item.kind] += 1
    quality = "too_dark" if wake.dark else "blurry" if wake.blurry else "ok"
    return Truth(mail=bool(items), package=counts["package"] > 0, categories=counts, quality=quality)


def _rgb(rng: random.Random, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    return (rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi))


def _jitter(colour: tuple[int, ...], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in colour[:3])  # type: ignore[return-value]


_WALLS = [(120, 124, 130), (70, 72, 78), (35, 36, 40), (150, 150, 145), (60, 90, 60), (140, 40, 35),
          (200, 200, 195), (110, 85, 60), (40, 55, 90), (170, 160, 120)]
_TEXTURES = ("plain", "corrugated", "wood", "mat", "dirty", "plain")


class Mailbox:
    """One mailbox as its camera sees it; ``frame()`` photographs it with some contents."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        rng = random.Random(f"box:{seed}")
        self.size = rng.choice([(640, 480), (640, 480), (800, 600), (480, 360)])
        self.top_down = rng.random() < 0.35
        self.wall = _jitter(rng.choice(_WALLS), rng, 20)
        floor_choice = rng.random()
        if floor_choice < 0.5:
            self.floor = _jitter(self.wall, rng, 25)
        else:
            self.floor = _jitter(rng.choice(_WALLS), rng, 25)
        self.texture = rng.choice(_TEXTURES)
        if self.texture == "wood":
            self.floor = _jitter((rng.randint(110, 170), rng.randint(75, 110), rng.randint(40, 70)), rng, 10)
        if self.texture == "mat":
            self.floor = _jitter((30, 30, 32), rng, 12)
        w, h = self.size
        self.back = (
            rng.uniform(0.12, 0.3) * w, rng.uniform(0.08, 0.25) * h,
            rng.uniform(0.7, 0.88) * w, rng.uniform(0.45, 0.62) * h,
        )
        self.hotspot = (rng.uniform(0.3, 0.7) * w, rng.uniform(0.35, 0.75) * h)
        self.hot_radius = rng.uniform(0.25, 0.7) * max(w, h)
        self.hot_gain = rng.uniform(0.15, 0.8)
        self.vignette = rng.uniform(0.0, 0.55)
        self.slot_light = rng.uniform(0.0, 0.45)
        self.base_exposure = rng.uniform(0.75, 1.2)
        self._background = self._draw_background(rng)

    # --- the empty box, drawn once --------------------------------------------------------------

    def _draw_background(self, rng: random.Random) -> np.ndarray:
        w, h = self.size
        img = Image.new("RGB", self.size, self.wall)
        d = ImageDraw.Draw(img)
        if self.top_down:
            d.rectangle([0, 0, w, h], fill=self.floor)
            rim = max(8, int(0.06 * w))
            d.rectangle([0, 0, w, rim], fill=_jitter(self.wall, rng, 15))
            d.rectangle([0, h - rim, w, h], fill=_jitter(self.wall, rng, 15))
            floor_poly = [(0, rim), (w, rim), (w, h - rim), (0, h - rim)]
        else:
            x0, y0, x1, y1 = self.back
            d.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill=_jitter(self.wall, rng, 18))
            floor_poly = [(0, h), (w, h), (x1, y1), (x0, y1)]
            d.polygon(floor_poly, fill=self.floor)
            d.polygon([(0, 0), (x0, y0), (x0, y1), (0, h)], fill=_jitter(self.wall, rng, 12))
            d.polygon([(w, 0), (x1, y0), (x1, y1), (w, h)], fill=_jitter(self.wall, rng, 12))
        self.floor_box = (
            int(min(p[0] for p in floor_poly)), int(min(p[1] for p in floor_poly)),
            int(max(p[0] for p in floor_poly)), int(max(p[1] for p in floor_poly)),
        )
        self._texture(d, rng, floor_poly)
        return np.asarray(img, dtype=np.float32)

    def _texture(self, d: ImageDraw.ImageDraw, rng: random.Random, floor: list) -> None:
        w, h = self.size
        fx0, fy0, fx1, fy1 = (int(min(p[0] for p in floor)), int(min(p[1] for p in floor)),
                              int(max(p[0] for p in floor)), int(max(p[1] for p in floor)))
        if self.texture == "corrugated":
            step = rng.randint(14, 40)
            shade = _jitter(self.floor, rng, 30)
            for x in range(fx0, fx1, step):
                d.line([(x, fy0), (x + rng.randint(-20, 20), fy1)], fill=shade, width=rng.randint(2, 5))
        elif self.texture == "wood":
            for _ in range(rng.randint(15, 40)):
                y = rng.randint(fy0, fy1)
                d.line([(fx0, y), (fx1, y + rng.randint(-8, 8))], fill=_jitter(self.floor, rng, 25), width=2)
        elif self.texture == "mat":
            step = rng.randint(10, 22)
            dot = _jitter((60, 60, 62), rng, 15)
            for y in range(fy0, fy1, step):
                for x in range(fx0, fx1, step):
                    d.ellipse([x, y, x + step // 3, y + step // 3], fill=dot)
        elif self.texture == "dirty":
            for _ in range(rng.randint(40, 150)):
                x, y, r = rng.randint(fx0, fx1), rng.randint(fy0, fy1), rng.randint(1, 5)
                d.ellipse([x - r, y - r, x + r, y + r], fill=_jitter(self.floor, rng, 45))
        if rng.random() < 0.4:  # a screw, a drain hole, a scratch: details that belong to the box
            for _ in range(rng.randint(2, 6)):
                x, y = rng.randint(0, w), rng.randint(0, h)
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=_jitter(self.wall, rng, 60))

    # --- one photo --------------------------------------------------------------------------

    def frame(self, items: list[Item], wake: Wake, *, quality: int | None = None) -> bytes:
        rng = random.Random(f"wake:{self.seed}:{wake.seed}")
        canvas = Image.fromarray(self._background.astype(np.uint8))
        for item in items:
            self._place(canvas, item)
        self._incidentals(canvas, rng)
        pixels = np.asarray(canvas, dtype=np.float32)
        pixels = pixels * self._light_field(rng, wake)[..., None]
        pixels = self._sun_and_shadow(pixels, rng, wake)
        pixels *= np.array([rng.uniform(0.9, 1.1), 1.0, rng.uniform(0.88, 1.12)], dtype=np.float32)  # white balance
        pixels = 255.0 * np.clip(pixels / 255.0, 0, 1) ** rng.uniform(0.85, 1.15)
        if wake.dark:
            pixels *= rng.uniform(0.03, 0.1)
        nrng = np.random.default_rng(rng.randrange(2**32))
        pixels += nrng.normal(0, rng.uniform(1.5, 7.0) * (1.8 if wake.night else 1.0), pixels.shape)
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        img = self._camera_shift(img, rng)
        if wake.blurry:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(5, 9)))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=quality or rng.randint(35, 85))
        return out.getvalue()

    def _light_field(self, rng: random.Random, wake: Wake) -> np.ndarray:
        w, h = self.size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
        cx, cy = self.hotspot
        r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / self.hot_radius**2
        flash = 1.0 + self.hot_gain * np.exp(-r2)
        corner = ((xs - w / 2) ** 2 + (ys - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        vignette = 1.0 - self.vignette * corner
        if wake.night:  # the flash alone: strong hot spot, dark edges, nothing from the slot
            light = (0.35 + 1.2 * self.hot_gain * np.exp(-r2 * 0.7)) * (1.0 - min(0.8, self.vignette * 1.5) * corner)
        else:
            slot = 1.0 + self.slot_light * (1.0 - ys / h)
            light = flash * vignette * slot
        exposure = self.base_exposure * rng.uniform(0.78, 1.25)
        return (light * exposure / max(1.0, float(np.percentile(light, 90)))).astype(np.float32)

    def _sun_and_shadow(self, pixels: np.ndarray, rng: random.Random, wake: Wake) -> np.ndarray:
        if wake.night:
            return pixels
        w, h = self.size
        roll = rng.random()
        if roll < 0.12 or roll > 0.9:
            mask = Image.new("L", self.size, 0)
            x = rng.uniform(0.0, 0.7) * w
            y = rng.uniform(0.3, 0.8) * h
            pw, ph, skew = rng.uniform(0.1, 0.35) * w, rng.uniform(0.05, 0.2) * h, rng.uniform(-0.2, 0.2) * w
            ImageDraw.Draw(mask).polygon([(x, y), (x + pw, y), (x + pw + skew, y + ph), (x + skew, y + ph)], fill=255)
            mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(1, 6)))
            m = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
            if roll < 0.12:  # sunlight through the slot: brighter and warmer
                gain = rng.uniform(1.25, 1.7) * np.array([1.08, 1.0, 0.9], dtype=np.float32)
            else:  # a shadow (the flap, a hand, a plant outside)
                gain = np.full(3, rng.uniform(0.5, 0.75), dtype=np.float32)
            pixels = pixels * (1 + m * (gain - 1))
        if rng.random() < 0.08:  # wet floor: darker, with glints
            fx0, fy0, fx1, fy1 = self.floor_box
            pixels[fy0:fy1, fx0:fx1] *= 0.82
            for _ in range(rng.randint(3, 12)):
                gx, gy = rng.randint(fx0, max(fx0, fx1 - 1)), rng.randint(fy0, max(fy0, fy1 - 1))
                pixels[max(0, gy - 1):gy + 2, max(0, gx - 2):gx + 3] = 250
        return pixels

    def _incidentals(self, canvas: Image.Image, rng: random.Random) -> None:
        """Small things that are not mail: a leaf, a bit of grit, an insect."""
        if rng.random() > 0.15:
            return
        d = ImageDraw.Draw(canvas)
        fx0, fy0, fx1, fy1 = self.floor_box
        x, y = rng.randint(fx0, max(fx0, fx1 - 20)), rng.randint(fy0, max(fy0, fy1 - 12))
        r = rng.randint(4, 11)
        colour = rng.choice([(80, 110, 40), (120, 90, 40), (40, 35, 30)])
        d.ellipse([x, y, x + 2 * r, y + r], fill=colour)

    def _camera_shift(self, img: Image.Image, rng: random.Random) -> Image.Image:
        w, h = self.size
        angle = rng.uniform(-1.2, 1.2)
        dx, dy = rng.uniform(-0.015, 0.015) * w, rng.uniform(-0.015, 0.015) * h
        scale = rng.uniform(0.985, 1.015)
        a = math.cos(math.radians(angle)) / scale
        b = math.sin(math.radians(angle)) / scale
        cx, cy = w / 2, h / 2
        coeffs = (a, b, cx - a * cx - b * cy + dx, -b, a, cy + b * cx - a * cy + dy)
        return img.transform(self.size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR,
                             fillcolor=tuple(int(c * 0.6) for c in self.wall))

    # --- contents ------------------------------------------------------------------------------

    def _place(self, canvas: Image.Image, item: Item) -> None:
        rng = random.Random(f"item:{self.seed}:{item.kind}:{item.seed}")
        art = _ART[item.kind](rng, self.size)
        w, h = self.size
        fx0, fy0, fx1, fy1 = self.floor_box
        if not self.top_down:  # perspective: things on the floor look flatter
            art = art.resize((art.width, max(8, int(art.height * rng.uniform(0.55, 0.85)))))
        art = art.convert("RGBA").rotate(rng.uniform(-35, 35), expand=True, resample=Image.Resampling.BICUBIC)
        x = rng.randint(fx0 - art.width // 6, max(fx0 - art.width // 6 + 1, fx1 - art.width + art.width // 6))
        y = rng.randint(max(0, fy0 - art.height // 4), max(fy0 + 1, min(h, fy1) - art.height + art.height // 8))
        shade = Image.new("RGBA", art.size, (0, 0, 0, 0))
        shade.putalpha(art.getchannel("A").point(lambda a: int(a * 0.35)))
        canvas.paste(shade, (x + 4, y + 5), shade)  # a soft contact shadow
        canvas.paste(art, (x, y), art)


def _text_lines(d: ImageDraw.ImageDraw, rng: random.Random, box: tuple[int, int, int, int], ink: tuple) -> None:
    x0, y0, x1, y1 = box
    y = y0
    while y < y1:
        d.line([(x0, y), (x0 + rng.randint((x1 - x0) // 3, x1 - x0), y)], fill=ink, width=rng.randint(1, 3))
        y += rng.randint(6, 12)


def _envelope(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    s = size[0] / 640
    w, h = int(rng.randint(150, 250) * s), int(rng.randint(85, 130) * s)
    tone = rng.choice([(245, 243, 235), (235, 225, 200), (250, 250, 252), (215, 228, 245), (245, 215, 220),
                       (190, 150, 100), (170, 130, 85)])
    env = Image.new("RGB", (w, h), _jitter(tone, rng, 8))
    d = ImageDraw.Draw(env)
    if rng.random() < 0.8:
        d.rectangle([w - int(38 * s), int(8 * s), w - int(10 * s), int(40 * s)], fill=_rgb(rng, 20, 220))
    _text_lines(d, rng, (w // 3, h // 2, w - 20, h - 10), (30, 30, 50))
    if rng.random() < 0.3:  # a window envelope
        d.rectangle([int(0.1 * w), int(0.5 * h), int(0.55 * w), int(0.8 * h)], outline=(150, 150, 150), width=2)
    d.rectangle([0, 0, w - 1, h - 1], outline=_jitter(tone, rng, 40))
    return env


def _package(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    s = size[0] / 640
    w, h = int(rng.randint(230, 360) * s), int(rng.randint(150, 240) * s)
    if rng.random() < 0.7:  # corrugated cardboard
        colour = (rng.randint(150, 200), rng.randint(105, 145), rng.randint(60, 95))
    else:  # a poly mailer: grey, white, black or a shop's colour
        colour = rng.choice([(200, 200, 205), (235, 235, 238), (45, 45, 50), _rgb(rng, 30, 230)])
    box = Image.new("RGB", (w, h), colour)
    d = ImageDraw.Draw(box)
    if rng.random() < 0.7:
        tape = rng.choice([(205, 180, 130), (225, 225, 220), (150, 120, 80)])
        d.rectangle([0, h // 2 - int(14 * s), w, h // 2 + int(14 * s)], fill=tape)
    lx, ly = rng.randint(5, max(6, w // 2)), rng.randint(5, max(6, h // 3))
    d.rectangle([lx, ly, lx + int(100 * s), ly + int(55 * s)], fill=(250, 250, 250))
    _text_lines(d, rng, (lx + 6, ly + 8, lx + int(90 * s), ly + int(48 * s)), (20, 20, 20))
    if rng.random() < 0.6:  # the lid's edge: a box is three-dimensional
        d.polygon([(0, 0), (w, 0), (w - int(25 * s), int(25 * s)), (int(25 * s), int(25 * s))],
                  fill=tuple(int(c * 0.82) for c in colour))
    d.rectangle([0, 0, w - 1, h - 1], outline=tuple(int(c * 0.6) for c in colour), width=3)
    return box


def _glossy(rng: random.Random, w: int, h: int) -> Image.Image:
    cover = Image.new("RGB", (w, h), _rgb(rng, 20, 240))
    d = ImageDraw.Draw(cover)
    for _ in range(rng.randint(3, 8)):
        x0, y0 = rng.randint(0, w), rng.randint(0, h)
        shape = [x0, y0, x0 + rng.randint(20, w), y0 + rng.randint(20, h)]
        (d.ellipse if rng.random() < 0.5 else d.rectangle)(shape, fill=_rgb(rng))
    _text_lines(d, rng, (10, h - h // 4, w - 10, h - 8), _rgb(rng, 200, 255))
    if rng.random() < 0.5:  # a glare stripe from the gloss
        d.polygon([(0, h // 3), (w // 4, 0), (w // 3, 0), (0, h // 2)], fill=(245, 245, 245))
    return cover


def _magazine(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    s = size[0] / 640
    return _glossy(rng, int(rng.randint(190, 250) * s), int(rng.randint(250, 320) * s))


def _flyer(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    s = size[0] / 640
    return _glossy(rng, int(rng.randint(130, 200) * s), int(rng.randint(180, 260) * s))


def _postcard(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    s = size[0] / 640
    return _glossy(rng, int(rng.randint(120, 160) * s), int(rng.randint(80, 110) * s))


_ART = {"letter": _envelope, "package": _package, "magazine": _magazine, "flyer": _flyer, "postcard": _postcard}


def random_contents(rng: random.Random, kind: str) -> list[Item]:
    """Contents for a test class: empty | letters | package | magazine (magazine or flyer)."""
    if kind == "empty":
        return []
    if kind == "letters":
        return [Item("letter", rng.randrange(10**6)) for _ in range(rng.randint(1, 4))]
    if kind == "package":
        extra = [Item("letter", rng.randrange(10**6))] if rng.random() < 0.4 else []
        return [Item("package", rng.randrange(10**6)), *extra]
    if kind == "magazine":
        return [Item(rng.choice(["magazine", "flyer", "postcard"]), rng.randrange(10**6))]
    raise ValueError(f"unknown contents class {kind!r}")
