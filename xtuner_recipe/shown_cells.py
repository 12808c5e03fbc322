"""xlsx cells as the spreadsheet shows them, from the cell's own number format (openpyxl's
`cell.number_format`): a date typed as 2027/6/30 is stored as a datetime, 5 % as 0.05 and ¥12.50
as 12.5, and a model trained on the stored values would learn answers nobody wrote.

Read: dates and times (y m d h s tokens, quoted and escaped text), percentages, fixed decimals,
thousands separators and currency or unit text around the number. Other formats (fractions,
scientific notation, conditions) are named as unreadable, so the caller can refuse those cells.
"""

import calendar
import datetime
import re

UNREADABLE = "unreadable"
# Excel's built-in short date (format 14) is stored as 'mm-dd-yy' but shown in the computer's
# own date order, which the file does not hold: read it as an unambiguous ISO date.
SHORT_DATE = "mm-dd-yy"
# Pieces of a format section: quoted text, an escaped character, [...] (a colour, a locale with a
# currency symbol, a condition), spacing (_x) and fill (*x), then the placeholders.
FORMAT_PIECE = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]|_.|\*.|[0#?,.]+|.', re.S)
DATE_PIECE = re.compile(r'"[^"]*"|\\.|\[[^\]]*\]|_.|\*.|am/pm|a/p|上午/下午|y+|m+|d+|h+|s+|\.0+|.',
                        re.I | re.S)
CURRENCY = set("$¥￥€£₩")


def general(value):
    """A number as Excel's General format shows it: 48, not 48.0."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def shown(cell):
    """(text, kind) of an openpyxl cell: kind names the conversion from the stored value
    ('date', 'percentage', 'currency', 'thousands separator', 'decimals'), None when the text is
    the stored value, UNREADABLE when the format is not one this module reads."""
    value, number_format = cell.value, cell.number_format or "General"
    if value is None:
        return "", None
    if isinstance(value, (datetime.date, datetime.time)):
        return date_text(value, number_format), "date"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value).strip(), None
    if number_format.lower() in ("general", "@"):
        return general(value), None
    return number_text(value, number_format)


def _section(number_format, value):
    """The format section for a value: 'positive;negative;zero;text'."""
    sections = re.findall(r'(?:"[^"]*"|\\.|[^;])+', number_format) or [""]
    if value < 0 and len(sections) > 1:
        return sections[1], abs(value)
    return sections[0], value


def date_text(value, number_format):
    if number_format == SHORT_DATE or number_format.lower() == "general":
        if isinstance(value, datetime.datetime):
            return value.isoformat(sep=" ").removesuffix(" 00:00:00")
        return value.isoformat()
    pieces = DATE_PIECE.findall(_section(number_format, 0)[0])
    tokens = [p.lower()[0] if p.isalpha() and p.lower()[0] in "ymdhs" else None for p in pieces]
    twelve_hour = any(p.lower() in ("am/pm", "a/p", "上午/下午") for p in pieces)

    def is_minute(i):  # m is the month, unless it follows an hour or precedes seconds
        before = next((t for t in reversed(tokens[:i]) if t), None)
        after = next((t for t in tokens[i + 1:] if t), None)
        return tokens[i] == "m" and len(pieces[i]) <= 2 and (before == "h" or after == "s")

    return "".join(f"{getattr(value, 'minute', 0):0{len(p)}d}" if is_minute(i)
                   else _date_piece(value, p, p.lower(), twelve_hour)
                   for i, p in enumerate(pieces))


def _date_piece(value, piece, low, twelve_hour):
    hour = getattr(value, "hour", 0)
    if low.isalpha() and low[0] in "ymdhs":
        kind, width = low[0], len(low)
        if kind == "y":
            return f"{value.year % 100:02d}" if width <= 2 else f"{value.year:04d}"
        if kind == "m":
            return (calendar.month_name[value.month] if width == 4 else
                    calendar.month_abbr[value.month] if width == 3 else
                    calendar.month_name[value.month][0] if width == 5 else
                    f"{value.month:0{width}d}")
        if kind == "d":
            return (calendar.day_name[value.weekday()] if width >= 4 else
                    calendar.day_abbr[value.weekday()] if width == 3 else f"{value.day:0{width}d}")
        if kind == "h":
            return f"{(hour % 12 or 12) if twelve_hour else hour:0{min(width, 2)}d}"
        return f"{getattr(value, 'second', 0):0{min(width, 2)}d}"
    if low == "am/pm":
        return "AM" if hour < 12 else "PM"
    if low == "a/p":
        return "a" if hour < 12 else "p"
    if low == "上午/下午":
        return "上午" if hour < 12 else "下午"
    if low.startswith(".0"):
        return f"{getattr(value, 'microsecond', 0) / 1e6:.{len(low) - 1}f}"[1:]
    return _literal(piece)


def _literal(piece):
    """The text a non-placeholder piece of a format shows."""
    if piece.startswith('"'):
        return piece[1:-1]
    if piece.startswith("\\"):
        return piece[1:]
    if piece.startswith("[$"):
        return piece[2:].split("-")[0]  # [$¥-804]: a currency symbol and its locale
    if piece.startswith(("[", "*")):
        return ""  # a colour or a fill
    if piece.startswith("_"):
        return " "  # the width of a character
    return piece


def number_text(stored, number_format):
    section, value = _section(number_format, stored)
    pieces = FORMAT_PIECE.findall(section)
    placeholders = [p for p in pieces if re.fullmatch(r"[0#?,.]+", p) and re.search(r"[0#?]", p)]
    if (len(placeholders) != 1 or re.search(r"[eE/@]", "".join(
            p for p in pieces if not p.startswith(('"', "\\", "[", "_", "*"))))
            or any(p.startswith("[") and not p.startswith("[$") and not p[1:-1].isalpha()
                   for p in pieces)):
        return general(stored), UNREADABLE  # scientific, fraction, condition, several numbers
    percent = sum(p == "%" for p in pieces)
    at = pieces.index(placeholders[0])
    whole, _, fraction = placeholders[0].partition(".")
    least, most = fraction.count("0"), len(re.findall(r"[0#?]", fraction))
    grouping = "," if "," in whole else ""
    head, _, tail = f"{abs(value) * 100 ** percent:{grouping}.{most}f}".partition(".")
    tail = tail[:least] + tail[least:].rstrip("0")  # '#' decimals are shown only when not 0
    head = head if "," in whole else head.zfill(whole.count("0"))
    number = head + ("." + tail if tail else "")
    text = ("-" if value < 0 else "") + "".join(number if i == at else _literal(p)
                                                for i, p in enumerate(pieces))
    literals = "".join(_literal(p) for i, p in enumerate(pieces) if i != at)
    kind = ("percentage" if percent else "currency" if CURRENCY & set(literals) else
            "thousands separator" if "," in whole else "decimals")
    return text.strip(), (None if text.strip() == general(stored) else kind)
