"""PDF documents: the invoice to pay and the closing documents (act of completed work + счёт-фактура).

Rendered with fpdf2 and the DejaVu Sans font shipped in ``noventiq_panel/fonts`` (Bitstream Vera
licence, see ``fonts/LICENSE-DejaVu.txt``), so Cyrillic is correct and the package does not depend
on the fonts of the machine. The renderers take plain data (no database access): the services
collect it and store or send the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace
from num2words import num2words

FONT_DIR = Path(__file__).resolve().parents[2] / "fonts"
FONT = "DejaVu"
HEADINGS = FontFace(emphasis="BOLD", fill_color=(235, 235, 235))  # the lines tables' heading row

# Currency names for the amount in words: (major unit, minor unit). Accounting style: the unit
# name stays in its base form and the minor units are written as two digits.
CURRENCY_WORDS = {
    "UZS": ("сум", "тийин"),
    "USD": ("долларов США", "центов"),
    "EUR": ("евро", "центов"),
    "RUB": ("рублей", "копеек"),
    "KZT": ("тенге", "тиынов"),
}
CURRENCY_SHORT = {"UZS": "сум", "USD": "USD", "EUR": "EUR", "RUB": "руб.", "KZT": "тенге"}

MONTHS_GENITIVE = ["января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа",
                   "сентября", "октября", "ноября", "декабря"]
MONTHS_NOMINATIVE = ["январь", "февраль", "март", "апрель", "май", "июнь", "июль", "август",
                     "сентябрь", "октябрь", "ноябрь", "декабрь"]


# ---------------------------------------------------------------- formatting

def fmt_money(amount: Decimal) -> str:
    """1234567.5 → '1 234 567,50' (Russian accounting style)."""
    value = Decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if value < 0 else ""
    whole, frac = f"{abs(value):.2f}".split(".")
    groups = []
    while whole:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    return f"{sign}{' '.join(groups)},{frac}"


def fmt_quantity(quantity: Decimal | int | None) -> str:
    if quantity is None:
        return ""
    value = Decimal(quantity).normalize()
    text = f"{value:f}"
    return text.replace(".", ",")


def fmt_date(day: date) -> str:
    return day.strftime("%d.%m.%Y")


def fmt_date_words(day: date) -> str:
    return f"«{day.day:02d}» {MONTHS_GENITIVE[day.month - 1]} {day.year} г."


def month_title(day: date) -> str:
    return f"{MONTHS_NOMINATIVE[day.month - 1]} {day.year} г."


def amount_in_words(amount: Decimal, currency: str = "UZS") -> str:
    """«Один миллион двести тысяч сум 00 тийин»."""
    value = Decimal(amount).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    negative = value < 0
    value = abs(value)
    whole = int(value)
    minor = int((value - whole) * 100)
    major_name, minor_name = CURRENCY_WORDS.get(currency.upper(), (currency.upper(), ""))
    words = num2words(whole, lang="ru")
    text = f"{words} {major_name} {minor:02d} {minor_name}".strip()
    if negative:
        text = "минус " + text
    return text[0].upper() + text[1:]


# ---------------------------------------------------------------- data

@dataclass
class Party:
    name: str
    tax_id: str = ""
    address: str = ""
    bank: str = ""
    account: str = ""
    phone: str = ""


@dataclass
class Line:
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal  # VAT included
    vat: Decimal = Decimal("0.00")


@dataclass
class InvoiceData:
    number: str
    issued_on: date
    due_date: date | None
    seller: Party
    buyer: Party
    currency: str
    lines: list[Line]
    total: Decimal
    vat_rate: Decimal
    vat: Decimal
    note: str = ""


@dataclass
class ClosingData:
    act_number: str
    invoice_number: str
    doc_date: date
    period_start: date
    period_end: date  # inclusive last day, for display
    seller: Party
    buyer: Party
    currency: str
    vat_rate: Decimal
    lines: list[Line] = field(default_factory=list)
    total: Decimal = Decimal("0.00")
    vat: Decimal = Decimal("0.00")


# ---------------------------------------------------------------- rendering helpers

class _Doc(FPDF):
    def __init__(self, title: str, orientation: str = "P"):
        super().__init__(orientation=orientation, unit="mm", format="A4")
        self.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.set_title(title)
        self.set_author("Noventiq panel")
        self.set_creator("noventiq_panel")
        self.set_auto_page_break(auto=True, margin=15)
        self.set_margins(15, 12, 15)
        self.alias_nb_pages()

    def footer(self):
        self.set_y(-10)
        self.set_font(FONT, "", 7)
        self.set_text_color(120)
        self.cell(0, 5, f"Стр. {self.page_no()} из {{nb}}", align="R")
        self.set_text_color(0)

    # text helpers
    def text_line(self, text: str, size: float = 9, bold: bool = False, align: str = "L", h: float = 5):
        self.set_font(FONT, "B" if bold else "", size)
        self.multi_cell(0, h, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def label_value(self, label: str, value: str, size: float = 9, label_w: float = 32):
        self.set_font(FONT, "", size)
        x = self.get_x()
        self.cell(label_w, 5, label)
        self.set_font(FONT, "B", size)
        self.multi_cell(self.w - self.r_margin - x - label_w, 5, value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def signature(self, role: str, name: str = "", x: float | None = None, w: float = 85):
        if x is not None:
            self.set_x(x)
        self.set_font(FONT, "", 9)
        self.cell(30, 6, role)
        self.cell(w - 30, 6, "_______________ / " + (name or "_______________") + " /")


def _party_text(p: Party) -> str:
    parts = [p.name]
    if p.tax_id:
        parts.append(f"ИНН {p.tax_id}")
    if p.address:
        parts.append(p.address)
    if p.phone:
        parts.append(f"тел. {p.phone}")
    if p.account:
        parts.append(f"р/с {p.account}")
    if p.bank:
        parts.append(p.bank)
    return ", ".join(parts)


def _output(pdf: FPDF) -> bytes:
    return bytes(pdf.output())


# ---------------------------------------------------------------- invoice to pay

def render_invoice(data: InvoiceData) -> bytes:
    """Счёт на оплату: bank requisites, number, date, parties, lines, totals, words, due date."""
    cur = CURRENCY_SHORT.get(data.currency, data.currency)
    pdf = _Doc(f"Счёт на оплату № {data.number}")
    pdf.add_page()

    # Bank requisites block, as on a payment order
    pdf.set_font(FONT, "", 8)
    bank_style = FontFace(emphasis="")
    with pdf.table(col_widths=(95, 25, 60), first_row_as_headings=False, line_height=5,
                   text_align="LEFT", headings_style=bank_style) as table:
        row = table.row()
        row.cell(f"{data.seller.bank}\nБанк получателя", rowspan=2)
        row.cell("Счёт №")
        row.cell(data.seller.account)
        row = table.row()
        row.cell("ИНН")
        row.cell(data.seller.tax_id)
        row = table.row()
        row.cell(f"{data.seller.name}\nПолучатель", colspan=3)
    pdf.ln(4)

    pdf.text_line(f"Счёт на оплату № {data.number} от {fmt_date_words(data.issued_on)}", size=14, bold=True)
    pdf.set_draw_color(0)
    pdf.set_line_width(0.6)
    pdf.line(pdf.l_margin, pdf.get_y() + 1, pdf.w - pdf.r_margin, pdf.get_y() + 1)
    pdf.set_line_width(0.2)
    pdf.ln(4)
    pdf.label_value("Поставщик:", _party_text(Party(data.seller.name, data.seller.tax_id, data.seller.address)))
    pdf.ln(1)
    pdf.label_value("Покупатель:", _party_text(data.buyer))
    pdf.ln(3)

    pdf.set_font(FONT, "", 8)
    with pdf.table(col_widths=(8, 92, 16, 14, 25, 25), text_align=("CENTER", "LEFT", "RIGHT", "CENTER", "RIGHT", "RIGHT"),
                   line_height=5, headings_style=HEADINGS) as table:
        _fill(table, ("№", "Наименование", "Кол-во", "Ед.", "Цена", "Сумма"),
              ((str(i), line.description, fmt_quantity(line.quantity), line.unit, fmt_money(line.unit_price),
                fmt_money(line.amount)) for i, line in enumerate(data.lines, 1)))
    pdf.ln(2)
    _totals(pdf, [("Итого:", data.total), (f"В том числе НДС ({fmt_quantity(data.vat_rate)}%):", data.vat),
                  ("Всего к оплате:", data.total)])
    pdf.ln(3)
    pdf.text_line(f"Всего наименований {len(data.lines)}, на сумму {fmt_money(data.total)} {cur}", size=9)
    pdf.text_line(amount_in_words(data.total, data.currency), size=9, bold=True)
    pdf.ln(3)
    if data.due_date:
        pdf.text_line(f"Оплатить не позднее {fmt_date(data.due_date)}.", size=9, bold=True)
    pdf.text_line(f"В назначении платежа обязательно укажите номер счёта: {data.number}.", size=9)
    if data.note:
        pdf.text_line(data.note, size=9)
    pdf.ln(2)
    pdf.set_line_width(0.6)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())
    pdf.set_line_width(0.2)
    pdf.ln(8)
    y = pdf.get_y()
    pdf.signature("Руководитель", x=pdf.l_margin)
    pdf.set_y(y)
    pdf.signature("Бухгалтер", x=pdf.l_margin + 95)
    pdf.ln(10)
    pdf.set_font(FONT, "", 8)
    pdf.cell(0, 5, "М.П.")
    return _output(pdf)


def _fill(table, titles: tuple[str, ...], rows) -> None:
    """The heading row and one row of text cells per document line."""
    head = table.row()
    for title in titles:
        head.cell(title)
    for cells in rows:
        row = table.row()
        for text in cells:
            row.cell(text)


def _totals(pdf: FPDF, rows: list[tuple[str, Decimal]], size: float = 9):
    for label, value in rows:
        pdf.set_font(FONT, "B", size)
        pdf.cell(pdf.w - pdf.r_margin - pdf.l_margin - 30, 5, label, align="R")
        pdf.cell(30, 5, fmt_money(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


# ---------------------------------------------------------------- closing documents

def render_closing(data: ClosingData) -> bytes:
    """Two documents in one PDF: the act of completed work (portrait) and the счёт-фактура
    (landscape), both for the month's charges."""
    cur = CURRENCY_SHORT.get(data.currency, data.currency)
    pdf = _Doc(f"Акт № {data.act_number}, счёт-фактура № {data.invoice_number}")

    # -------- Act
    pdf.add_page()
    pdf.text_line(f"Акт № {data.act_number} от {fmt_date_words(data.doc_date)}", size=14, bold=True)
    pdf.text_line(f"об оказании услуг (выполненных работ) за {month_title(data.period_start)}", size=10)
    pdf.text_line(f"Период: с {fmt_date(data.period_start)} по {fmt_date(data.period_end)}", size=9)
    pdf.set_line_width(0.6)
    pdf.line(pdf.l_margin, pdf.get_y() + 1, pdf.w - pdf.r_margin, pdf.get_y() + 1)
    pdf.set_line_width(0.2)
    pdf.ln(4)
    pdf.label_value("Исполнитель:", _party_text(data.seller))
    pdf.ln(1)
    pdf.label_value("Заказчик:", _party_text(data.buyer))
    pdf.ln(3)

    pdf.set_font(FONT, "", 8)
    with pdf.table(col_widths=(8, 72, 16, 12, 24, 24, 24),
                   text_align=("CENTER", "LEFT", "RIGHT", "CENTER", "RIGHT", "RIGHT", "RIGHT"), line_height=4.5,
                   headings_style=HEADINGS) as table:
        _fill(table, ("№", "Наименование работ, услуг", "Кол-во", "Ед.", "Цена", "Сумма",
                      f"в т.ч. НДС {fmt_quantity(data.vat_rate)}%"),
              ((str(i), line.description, fmt_quantity(line.quantity), line.unit, fmt_money(line.unit_price),
                fmt_money(line.amount), fmt_money(line.vat)) for i, line in enumerate(data.lines, 1)))
    pdf.ln(2)
    _totals(pdf, [("Итого:", data.total), (f"В том числе НДС ({fmt_quantity(data.vat_rate)}%):", data.vat)])
    pdf.ln(3)
    pdf.text_line(f"Всего оказано услуг {len(data.lines)}, на сумму {fmt_money(data.total)} {cur}", size=9)
    pdf.text_line(amount_in_words(data.total, data.currency), size=9, bold=True)
    pdf.ln(2)
    pdf.text_line("Вышеперечисленные услуги выполнены полностью и в срок. Заказчик претензий по объёму, "
                  "качеству и срокам оказания услуг не имеет.", size=9)
    pdf.ln(8)
    y = pdf.get_y()
    col2 = pdf.l_margin + 95
    pdf.set_font(FONT, "B", 9)
    pdf.cell(90, 5, "ИСПОЛНИТЕЛЬ")
    pdf.set_xy(col2, y)
    pdf.cell(90, 5, "ЗАКАЗЧИК", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    y = pdf.get_y()
    pdf.set_font(FONT, "", 8)
    pdf.set_xy(pdf.l_margin, y)
    pdf.multi_cell(85, 4, data.seller.name, align="L")
    pdf.set_xy(col2, y)
    pdf.multi_cell(85, 4, data.buyer.name, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(8)
    y = pdf.get_y()
    pdf.set_xy(pdf.l_margin, y)
    pdf.set_font(FONT, "", 9)
    pdf.cell(85, 5, "_______________ / _______________ /")
    pdf.set_xy(col2, y)
    pdf.cell(85, 5, "_______________ / _______________ /", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 8)
    pdf.cell(95, 5, "М.П.")
    pdf.cell(85, 5, "М.П.", new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    # -------- Счёт-фактура
    pdf.add_page(orientation="L")
    pdf.text_line(f"СЧЁТ-ФАКТУРА № {data.invoice_number} от {fmt_date_words(data.doc_date)}", size=14,
                  bold=True, align="C")
    pdf.text_line(f"к акту об оказании услуг № {data.act_number} от {fmt_date(data.doc_date)}", size=9, align="C")
    pdf.ln(3)
    half = (pdf.w - pdf.l_margin - pdf.r_margin) / 2 - 3
    y = pdf.get_y()
    _party_block(pdf, "Поставщик", data.seller, pdf.l_margin, y, half)
    y1 = pdf.get_y()
    _party_block(pdf, "Покупатель", data.buyer, pdf.l_margin + half + 6, y, half)
    pdf.set_y(max(y1, pdf.get_y()) + 3)

    pdf.set_font(FONT, "", 7.5)
    net_total = data.total - data.vat
    with pdf.table(col_widths=(8, 80, 14, 16, 24, 30, 14, 26, 32),
                   text_align=("CENTER", "LEFT", "CENTER", "RIGHT", "RIGHT", "RIGHT", "CENTER", "RIGHT", "RIGHT"),
                   line_height=4.2, headings_style=HEADINGS) as table:
        _fill(table, ("№", "Наименование товаров (работ, услуг)", "Ед. изм.", "Кол-во", "Цена",
                      "Стоимость поставки без НДС", "НДС, %", "НДС, сумма", "Стоимость поставки с НДС"),
              ((str(i), line.description, line.unit, fmt_quantity(line.quantity), fmt_money(line.unit_price),
                fmt_money(line.amount - line.vat), fmt_quantity(data.vat_rate), fmt_money(line.vat),
                fmt_money(line.amount)) for i, line in enumerate(data.lines, 1)))
        row = table.row()
        row.cell("Итого", colspan=5, align="RIGHT", style=FontFace(emphasis="BOLD"))
        row.cell(fmt_money(net_total), style=FontFace(emphasis="BOLD"))
        row.cell("")
        row.cell(fmt_money(data.vat), style=FontFace(emphasis="BOLD"))
        row.cell(fmt_money(data.total), style=FontFace(emphasis="BOLD"))
    pdf.ln(3)
    pdf.text_line(f"Всего к оплате: {amount_in_words(data.total, data.currency)}, "
                  f"в том числе НДС {fmt_money(data.vat)} {cur}", size=9, bold=True)
    pdf.ln(8)
    y = pdf.get_y()
    col2 = pdf.l_margin + half + 6
    pdf.set_xy(pdf.l_margin, y)
    pdf.signature("Руководитель", w=120)
    pdf.set_xy(col2, y)
    pdf.signature("Получил", w=120)
    pdf.ln(9)
    pdf.set_x(pdf.l_margin)
    pdf.signature("Гл. бухгалтер", w=120)
    pdf.ln(9)
    pdf.set_font(FONT, "", 8)
    pdf.cell(0, 5, "М.П.")
    return _output(pdf)


def _party_block(pdf: FPDF, title: str, p: Party, x: float, y: float, w: float):
    pdf.set_xy(x, y)
    pdf.set_font(FONT, "B", 9)
    pdf.multi_cell(w, 5, f"{title}: {p.name}", align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 8)
    for label, value in (("Адрес", p.address), ("ИНН", p.tax_id), ("Телефон", p.phone),
                         ("Р/с", p.account), ("Банк", p.bank)):
        if value:
            pdf.set_x(x)
            pdf.multi_cell(w, 4.2, f"{label}: {value}", align="L", new_x=XPos.LEFT, new_y=YPos.NEXT)
