"""/billing — balance, payments (top-up by bank transfer, or by card through Payme/Click when
configured), transactions, closing documents.

``/billing?tab=transactions`` / ``?tab=documents`` open a tab; ``/billing?topup=AMOUNT`` opens the
top-up dialog pre-filled (the shortfall path). Files are handed to the browser by the state
(``rx.download(data=...)``), never through ``/_upload``.
"""

from __future__ import annotations

import reflex as rx

from ..components import (
    Column, T, amount_line, amount_text, back_button, big_amount, button_row, card_title, close_button,
    data_table, date_input, empty_box, error_callout, field_label, labelled, page_header, paged, panel_page,
    read_only_note, step_dialog, tab_panel, table_box, when_loaded,
)
from ..components.tables import PHONE_FLEX, PHONE_INLINE, WIDE_CELL, WIDE_INLINE
from ..state.billing import ALL, PAY_STATUSES, TX_KINDS, BillingState

PAY_COLUMNS = [
    Column("number", "billing.payments.number", numeric=True),
    Column("date", "billing.payments.date", numeric=True, hide_on_phone=True),
    Column("kind", "billing.payments.kind", hide_on_phone=True),
    Column("amount", "billing.payments.amount", align="right", numeric=True),
    Column("paid", "billing.payments.paid", align="right", numeric=True, hide_on_phone=True),
    # No method column while bank transfer is the only method (the invoice PDF names it).
    Column("due", "billing.payments.due", numeric=True, hide_on_phone=True),
    Column("status", "billing.payments.status", badge_color_key="status_color"),
]

DOC_COLUMNS = [
    Column("period", "billing.docs.period"),
    Column("number", "billing.docs.number", numeric=True),
    Column("invoice", "billing.docs.invoice", numeric=True, hide_on_phone=True),
    Column("total", "billing.docs.total", align="right", numeric=True),
    Column("vat", "billing.docs.vat", align="right", numeric=True, hide_on_phone=True),
    Column("created", "billing.docs.created", numeric=True, hide_on_phone=True),
]


# ---------------------------------------------------------------- summary

def summary() -> rx.Component:
    return rx.card(
        rx.flex(
            rx.vstack(
                card_title("billing.balance", "wallet"),
                big_amount(BillingState.balance, negative=BillingState.balance_negative, id="billing-balance"),
                spacing="1",
            ),
            rx.cond(
                BillingState.card_account != "",
                rx.text(T("billing.card.account", account=BillingState.card_account), size="2", id="card-account"),
                rx.fragment(),
            ),
            rx.cond(
                BillingState.is_postpaid,
                rx.vstack(
                    amount_line("billing.credit_limit", BillingState.credit_limit, spread=False),
                    amount_line("billing.available", BillingState.available, spread=False, weight="medium"),
                    spacing="1",
                ),
                rx.fragment(),
            ),
            justify="between",
            align="center",
            gap="3",
            wrap="wrap",
            width="100%",
        ),
        width="100%",
        margin_bottom="1rem",
    )


# ---------------------------------------------------------------- payments

def topup_form() -> rx.Component:
    return rx.vstack(
        error_callout(BillingState.topup_error, "topup-error"),
        field_label("billing.topup.method", "topup-method"),
        rx.select.root(
            rx.select.trigger(width="100%", id="topup-method", aria_label=T("billing.topup.method")),
            rx.select.content(rx.foreach(BillingState.methods, lambda m: rx.select.item(m["label"],
                                                                                         value=m["code"]))),
            value=BillingState.topup_method,
            on_change=BillingState.set_topup_method,
        ),
        rx.text(T("billing.topup.amount", currency=BillingState.currency), as_="label",
                custom_attrs={"htmlFor": "topup-amount"}, size="2", weight="medium"),
        rx.input(value=BillingState.topup_amount, on_change=BillingState.set_topup_amount, id="topup-amount",
                 input_mode="decimal", auto_complete="off", placeholder="1 000 000", width="100%", size="3"),
        rx.text(BillingState.topup_hint, size="1", color=rx.color("gray", 11)),
        rx.cond(BillingState.card_payme | BillingState.card_click, card_buttons(), rx.fragment()),
        button_row(close_button("billing.topup.cancel"),
                   rx.button(T("billing.topup.continue"), on_click=BillingState.topup_review, id="topup-continue")),
        spacing="2",
        width="100%",
    )


def card_buttons() -> rx.Component:
    """Leave for a gateway's page with the amount typed (shown only when one is configured)."""
    def button(provider: str, enabled) -> rx.Component:
        return rx.cond(enabled, rx.button(rx.icon("credit-card", size=16), T(f"billing.card.{provider}"),
                                          variant="soft", on_click=BillingState.pay_by_card(provider),
                                          id=f"pay-{provider}", margin_right="0.5rem"), rx.fragment())

    return rx.vstack(
        rx.text(T("billing.card.title"), size="2", weight="medium"),
        rx.flex(button("payme", BillingState.card_payme), button("click", BillingState.card_click), gap="2",
                wrap="wrap"),
        rx.text(T("billing.card.hint"), size="1", color=rx.color("gray", 11)),
        spacing="1",
        width="100%",
    )


def topup_confirm() -> rx.Component:
    return rx.vstack(
        rx.text(T("billing.topup.confirm_text", amount=BillingState.topup_amount_label,
                  method=BillingState.topup_method_label), size="3", id="topup-confirm-text"),
        button_row(back_button(BillingState.topup_back, "billing.topup.back"),
                   rx.button(T("billing.topup.confirm"), on_click=BillingState.topup_confirm,
                             loading=BillingState.topup_busy, id="topup-confirm")),
        spacing="3",
        width="100%",
    )


def topup_done() -> rx.Component:
    return rx.vstack(
        rx.callout(T("billing.topup.created", number=BillingState.topup_number), icon="circle-check",
                   color_scheme="green", width="100%", id="topup-created"),
        rx.text(T("billing.method.bank_transfer.instructions"), size="2"),
        button_row(rx.button(rx.icon("download", size=16), T("billing.topup.download"),
                             on_click=BillingState.download_topup_invoice, id="topup-download"),
                   close_button("billing.close")),
        spacing="3",
        width="100%",
    )


def topup_dialog() -> rx.Component:
    return step_dialog(
        rx.cond(BillingState.topup_step == "confirm", T("billing.topup.confirm_title"), T("billing.topup.title")),
        rx.match(BillingState.topup_step, ("confirm", topup_confirm()), ("done", topup_done()), topup_form()),
        trigger=rx.button(rx.icon("plus", size=16), T("billing.topup.button"), id="topup-open"),
        open=BillingState.topup_open,
        on_open_change=BillingState.set_topup_open,
    )


def status_filter() -> rx.Component:
    return rx.hstack(
        rx.text(T("billing.payments.filter_status"), size="2", color=rx.color("gray", 11)),
        rx.select.root(
            rx.select.trigger(id="pay-status", aria_label=T("billing.payments.filter_status")),
            rx.select.content(*[rx.select.item(T("billing.all") if s == ALL else T(f"billing.status.{s}"), value=s)
                                for s in PAY_STATUSES]),
            value=BillingState.pay_status,
            on_change=BillingState.set_pay_status,
            size="2",
        ),
        spacing="2",
        align="center",
    )


def payments_tab() -> rx.Component:
    return rx.vstack(
        rx.flex(
            status_filter(),
            rx.cond(BillingState.can_write, topup_dialog(), read_only_note("billing.read_only")),
            justify="between", align="center", gap="3", wrap="wrap", width="100%",
        ),
        data_table(
            PAY_COLUMNS, BillingState.pay_rows, page=BillingState.pay_page, pages=BillingState.pay_pages,
            on_page=BillingState.pay_go_page, total=BillingState.pay_total, empty_key="billing.empty",
            actions=lambda row: rx.icon_button(rx.icon("file-down", size=16), variant="soft", size="1",
                                               on_click=BillingState.download_invoice(row["id"]),
                                               aria_label=T("a11y.download_invoice"), class_name="invoice-download"),
            actions_label_key="billing.payments.invoice", table_id="payments-table",
        ),
        spacing="4",
        width="100%",
    )


# ---------------------------------------------------------------- transactions

def tx_filters() -> rx.Component:
    return rx.form(
        rx.flex(
            labelled("billing.tx.from", date_input("start", "tx-start", BillingState.tx_start_shown),
                     "tx-start", width="auto"),
            labelled("billing.tx.to", date_input("end", "tx-end", BillingState.tx_end_shown),
                     "tx-end", width="auto"),
            labelled(
                "billing.tx.kind",
                rx.select.root(
                    rx.select.trigger(id="tx-kind", min_width="10rem", aria_label=T("billing.tx.kind")),
                    rx.select.content(*[rx.select.item(T("billing.all") if k == ALL else T(f"billing.tx.kind.{k}"),
                                                       value=k) for k in TX_KINDS]),
                    name="kind", default_value=ALL,
                ),
                width="auto",
            ),
            labelled(
                "billing.tx.subscription",
                rx.select.root(
                    rx.select.trigger(id="tx-sub", min_width="12rem", aria_label=T("billing.tx.subscription")),
                    rx.select.content(
                        rx.select.item(T("billing.tx.all_subscriptions"), value=ALL),
                        rx.foreach(BillingState.sub_options, lambda o: rx.select.item(o["name"], value=o["id"])),
                    ),
                    name="subscription", default_value=ALL,
                ),
                width="auto",
            ),
            rx.hstack(
                rx.button(T("billing.apply"), type="submit", id="tx-apply"),
                rx.button(T("billing.reset"), type="reset", variant="soft", color_scheme="gray",
                          on_click=BillingState.tx_reset),
                spacing="2",
            ),
            gap="3", wrap="wrap", align="end", width="100%",
        ),
        on_submit=BillingState.tx_apply,
        reset_on_submit=False,
        width="100%",
    )


def tx_table() -> rx.Component:
    def render(row) -> rx.Component:
        return rx.table.row(
            rx.table.cell(rx.text(row["date"], size="2", style={"white_space": "nowrap"}), display=WIDE_CELL),
            rx.table.cell(rx.badge(row["kind"], color_scheme=row["kind_color"], variant="soft"), display=WIDE_CELL),
            rx.table.cell(
                # on a phone the date and the kind go above the description (their columns are hidden)
                rx.flex(rx.text(row["date"], size="1", color=rx.color("gray", 11)),
                        rx.badge(row["kind"], color_scheme=row["kind_color"], variant="soft"),
                        display=PHONE_FLEX, gap="2", align="center", wrap="wrap", margin_bottom="0.25rem"),
                rx.text(row["description"], size="2"),
                min_width=rx.breakpoints(initial="11rem", sm="14rem"),
            ),
            rx.table.cell(rx.text(row["subscription"], size="2"), display=WIDE_CELL),
            rx.table.cell(amount_text(row["amount"], negative=row["negative"] == "1"), text_align="right"),
            rx.table.cell(amount_text(row["running"], weight="medium"), text_align="right", class_name="tx-running",
                          display=WIDE_CELL),
            class_name="nq-row tx-row",
        )

    def head(key: str, align: str = "left", phone: bool = True) -> rx.Component:
        props = {} if phone else {"display": WIDE_CELL}
        return rx.table.column_header_cell(T(key), text_align=align, white_space="nowrap", **props)

    headers = [
        head("billing.tx.date", phone=False), head("billing.tx.kind", phone=False), head("billing.tx.description"),
        head("billing.tx.subscription", phone=False), head("billing.tx.amount", "right"),
        head("billing.tx.running", "right", phone=False),
    ]
    return paged(
        rx.cond(
            BillingState.tx_rows.length() > 0,
            table_box(headers, BillingState.tx_rows, render, table_id="transactions-table"),
            empty_box("billing.empty"),
        ),
        BillingState.tx_page, BillingState.tx_pages, BillingState.tx_go_page, BillingState.tx_total,
    )


def transactions_tab() -> rx.Component:
    return rx.vstack(
        tx_filters(),
        rx.flex(
            rx.text(
                rx.flex(rx.switch(checked=BillingState.tx_group, on_change=BillingState.tx_set_group,
                                  id="tx-group", aria_label=T("billing.tx.group_usage")),
                        T("billing.tx.group_usage"), gap="2", align="center"),
                as_="label", size="2",
            ),
            rx.spacer(),
            rx.button(rx.icon("file-text", size=16), T("billing.tx.export_csv"), variant="soft",
                      on_click=BillingState.export_transactions("csv"), loading=BillingState.exporting,
                      id="export-csv"),
            rx.button(rx.icon("sheet", size=16), T("billing.tx.export_xlsx"), variant="soft",
                      on_click=BillingState.export_transactions("xlsx"), loading=BillingState.exporting,
                      id="export-xlsx"),
            gap="2",
            align="center",
            wrap="wrap",
            width="100%",
        ),
        tx_table(),
        spacing="4",
        width="100%",
    )


# ---------------------------------------------------------------- documents

def documents_tab() -> rx.Component:
    return rx.vstack(
        rx.flex(
            rx.text(T("billing.docs.hint"), size="2", color=rx.color("gray", 11), max_width="40rem"),
            rx.hstack(
                rx.text(T("billing.docs.year"), size="2", color=rx.color("gray", 11)),
                rx.select.root(
                    rx.select.trigger(id="doc-year", aria_label=T("billing.docs.year")),
                    rx.select.content(
                        rx.select.item(T("billing.all"), value=ALL),
                        rx.foreach(BillingState.doc_years, lambda y: rx.select.item(y, value=y)),
                    ),
                    value=BillingState.doc_year,
                    on_change=BillingState.set_doc_year,
                ),
                spacing="2",
                align="center",
            ),
            justify="between", align="center", gap="3", wrap="wrap", width="100%",
        ),
        data_table(
            DOC_COLUMNS, BillingState.doc_rows, page=BillingState.doc_page, pages=BillingState.doc_pages,
            on_page=BillingState.doc_go_page, total=BillingState.doc_total, empty_key="billing.empty",
            actions=lambda row: rx.hstack(
                rx.button(rx.icon("file-down", size=14), T("billing.download"), variant="soft",
                          size="1", on_click=BillingState.download_document(row["id"]),
                          class_name="document-download"),
                # the Didox files (ЭСФ type 002, act type 005): Owner and Financial manager only
                rx.cond(
                    (BillingState.role == "owner") | (BillingState.role == "finance"),
                    rx.hstack(
                        rx.button(rx.icon("file-json", size=14), T("esf.download_esf"), variant="soft", size="1",
                                  on_click=BillingState.download_esf(row["id"], "esf"), class_name="esf-download"),
                        rx.button(rx.icon("file-json", size=14), T("esf.download_act"), variant="soft", size="1",
                                  on_click=BillingState.download_esf(row["id"], "act"),
                                  class_name="esf-act-download"),
                        spacing="2", wrap="wrap",
                    ),
                ),
                spacing="2", wrap="wrap", justify="end",
            ),
            table_id="documents-table",
        ),
        spacing="4",
        width="100%",
    )


@panel_page("/billing", title_key="billing.title", section="billing", on_load=BillingState.load)
def billing_page() -> rx.Component:
    return rx.vstack(
        page_header("billing.title", subtitle=BillingState.org_name),
        when_loaded(
            BillingState.loaded,
            rx.vstack(
                summary(),
                rx.tabs.root(
                    rx.tabs.list(
                        rx.tabs.trigger(T("billing.tab.payments"), value="payments", id="tab-payments"),
                        rx.tabs.trigger(T("billing.tab.transactions"), value="transactions", id="tab-transactions"),
                        rx.tabs.trigger(
                            rx.text(T("billing.tab.documents"), as_="span", display=WIDE_INLINE),
                            rx.text(T("billing.tab.documents_short"), as_="span", display=PHONE_INLINE),
                            value="documents", id="tab-documents"),
                    ),
                    tab_panel("payments", payments_tab()),
                    tab_panel("transactions", transactions_tab()),
                    tab_panel("documents", documents_tab()),
                    value=BillingState.tab,
                    on_change=BillingState.set_tab,
                    activation_mode="manual",  # one click, one event (focus does not switch too)
                    width="100%",
                ),
                spacing="0",
                width="100%",
            ),
        ),
        spacing="0",
        width="100%",
    )
