"""xlsx cells as the sheet shows them, from each cell's own number format (saved and read back
through openpyxl, as the recipe reads a user's workbook)."""

import datetime

import openpyxl
import pytest

from xtuner_recipe.shown_cells import UNREADABLE, shown

CASES = [
    # dates and times: Excel stores a datetime, the format says how it reads
    (datetime.datetime(2027, 6, 30), "yyyy-mm-dd", "2027-06-30", "date"),
    (datetime.datetime(2027, 6, 30), "mm-dd-yy", "2027-06-30", "date"),  # the system short date
    (datetime.datetime(2027, 6, 30), 'yyyy"年"m"月"d"日"', "2027年6月30日", "date"),
    (datetime.datetime(2027, 6, 30), '[$-804]yyyy"年"m"月"d"日";@', "2027年6月30日", "date"),
    (datetime.datetime(2027, 6, 30, 14, 5), "yyyy/m/d h:mm", "2027/6/30 14:05", "date"),
    (datetime.datetime(2027, 6, 30, 14, 5, 9), "h:mm:ss AM/PM", "2:05:09 PM", "date"),
    (datetime.datetime(2027, 6, 30), "d mmm yyyy", "30 Jun 2027", "date"),
    # numbers: percentages, currency, separators, fixed decimals, units
    (0.05, "0%", "5%", "percentage"),
    (0.055, "0.0%", "5.5%", "percentage"),
    (12.5, '"¥"#,##0.00', "¥12.50", "currency"),
    (12.5, "[$¥-804]#,##0.00", "¥12.50", "currency"),
    (1234.5, "¥#,##0.00_);[Red](¥#,##0.00)", "¥1,234.50", "currency"),
    (-1234.5, "#,##0.00;[Red]-#,##0.00", "-1,234.50", "thousands separator"),
    (12000, "#,##0", "12,000", "thousands separator"),
    (3.0, "0.00", "3.00", "decimals"),
    (12.5, '0.00"元"', "12.50元", "decimals"),
    (7, "000", "007", "decimals"),
    # as stored: nothing converted
    (3.25, "#.##", "3.25", None),
    (48.0, "0", "48", None),
    (48.0, "General", "48", None),
    ("５ 粒", "General", "５ 粒", None),
    # formats not reproduced: named, so the caller can refuse them
    (0.5, "# ?/?", "0.5", UNREADABLE),
    (12345.0, "0.00E+00", "12345", UNREADABLE),
    (150, '[>=100]"many";0', "150", UNREADABLE),
]


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    path = tmp_path_factory.mktemp("book") / "formats.xlsx"
    book = openpyxl.Workbook()
    for row, (value, number_format, _, _) in enumerate(CASES, start=1):
        book.active.cell(row, 1, value).number_format = number_format
    book.save(path)
    return [row[0] for row in openpyxl.load_workbook(path, data_only=True).active.iter_rows()]


@pytest.mark.parametrize("case", range(len(CASES)), ids=lambda i: CASES[i][1])
def test_a_cell_reads_as_its_number_format_shows_it(cells, case):
    _, _, text, kind = CASES[case]
    assert shown(cells[case]) == (text, kind)
