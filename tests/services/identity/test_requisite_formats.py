"""The formats of tax ids, bank requisites and ИКПУ codes take ASCII digits only (issue 19 review).

Hazard: ``\\d`` matches the digits of every script, so a tax id typed in fullwidth (３００…) or
Arabic-Indic digits passed the format check, compared as another string than the real company's
(slipping past the one-customer-per-tax-id rule) and rendered like it on invoices and the ЭСФ.
"""

from __future__ import annotations

import pytest

from noventiq_panel.models import Organisation, Role
from noventiq_panel.services.core import requisites
from noventiq_panel.services.core.errors import InvalidInput
from noventiq_panel.services.identity import organisations, validation

from tests import factories as f

LOOKALIKES = [
    (requisites.validate_tax_id, "３００００００01"),  # fullwidth
    (requisites.validate_tax_id, "٣٠٠٠٠٠٠٠١"),  # Arabic-Indic
    (requisites.validate_tax_id, "۳۰۰۰۰۰۰۰۱"),  # Extended Arabic-Indic (Persian)
    (validation.validate_tax_id, "３０００００００１"),
    (requisites.validate_mfo, "٠٠٨٧٣"),
    (requisites.validate_bank_account, "２０２０８０００４０５５１２８７４００１"),
    (requisites.validate_mxik_code, "१०३०५००८००२००००००"),  # Devanagari
    (requisites.validate_package_code, "１５４５０３３"),
    (requisites.validate_oked, "４６５１０"),
    (requisites.validate_vat_reg_code, "３２６０６００００００１"),
]


@pytest.mark.parametrize("check, value", LOOKALIKES)
def test_digits_of_other_scripts_are_refused(check, value):
    with pytest.raises(InvalidInput):
        check(value)


def test_a_phone_number_takes_ascii_digits_only():
    assert validation.validate_phone("+998 90 123-45-67") == "+998 90 123-45-67"
    with pytest.raises(InvalidInput):
        validation.validate_phone("+９９８ ９０ １２３-４５-６７")


def test_a_lookalike_tax_id_cannot_be_claimed_beside_the_real_one(session):
    real = f.org(session, name="ООО «Настоящая»", tax_id="300000001")
    f.user(session, real, Role.OWNER)
    twin = f.org(session, name="ООО «Двойник»", tax_id="")
    owner = f.user(session, twin, Role.OWNER)
    with pytest.raises(InvalidInput) as err:
        organisations.update_details(session, f.actor(owner, twin), name="ООО «Настоящая»", tax_id="３０００００００１")
    assert err.value.key == "organisations.tax_id_invalid"
    session.expire_all()
    assert session.get(Organisation, twin.id).tax_id == ""
    with pytest.raises(InvalidInput):
        organisations.set_requisites(session, twin.id, tax_id="٣٠٠٠٠٠٠٠١")
    session.expire_all()
    assert session.get(Organisation, twin.id).tax_id == ""
