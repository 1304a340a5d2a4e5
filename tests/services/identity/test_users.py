"""Members: invite, roles, deactivation; who may do what; the last owner; the own profile."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from argon2 import PasswordHasher
from sqlmodel import Session, func, select

from noventiq_panel.models import AuditEvent, Membership, Notification, PasswordResetToken, Role, User
from noventiq_panel.services.identity import auth, users
from noventiq_panel.services.core.authz import Actor
from noventiq_panel.services.core.errors import Conflict, Forbidden, InvalidInput, NotAuthenticated, NotFound, Throttled

from tests import factories as f

T0 = datetime(2025, 9, 24, 9, 0, tzinfo=timezone.utc)
PW = "correct horse 1"


@pytest.fixture(autouse=True)
def fast_hasher(monkeypatch):
    monkeypatch.setattr(auth, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    monkeypatch.setattr(auth, "_dummy_hash", None)


@pytest.fixture
def team(session):
    """An organisation with an owner, an admin and a financial manager (all with passwords)."""
    o = f.org(session, name="ООО «Команда»")
    people = {}
    for role in (Role.OWNER, Role.ADMIN, Role.FINANCE):
        people[role] = f.user(session, o, role, email=f"{role}@team.example", name=f"{role} name",
                              password_hash=auth.hash_password(PW))
    return o, people


def membership(session, user: User, org) -> Membership:
    return session.exec(select(Membership).where(Membership.user_id == user.id, Membership.org_id == org.id)).one()


def count(session, model, *where) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


def snapshot(session):
    return [(m.id, m.role, m.is_active) for m in session.exec(select(Membership).order_by(Membership.id)).all()], \
        count(session, User), count(session, Notification), count(session, AuditEvent)


# --- invite ----------------------------------------------------------------------------------

def test_invite_a_new_user_then_set_password_then_sign_in(session, team):
    o, people = team
    admin = people[Role.ADMIN]
    view = users.invite(session, f.actor(admin, o), email=" New.Person@Example.com ", name="Новый Сотрудник",
                        role=Role.FINANCE, now=T0)
    assert (view.email, view.role, view.is_active, view.pending) == ("new.person@example.com", Role.FINANCE, True, True)
    mail = session.exec(select(Notification).where(Notification.kind == "invite")).one()
    assert mail.to_email == "new.person@example.com" and mail.org_id == o.id
    assert "admin name" in mail.body_text and "Финансовый менеджер" in mail.body_text
    token = f.mailed_token(session, mail)
    assert auth.check_reset_token(session, token, now=T0).purpose == "invite"
    # without a password the invited user cannot sign in yet
    with pytest.raises(NotAuthenticated):
        auth.sign_in(session, "new.person@example.com", "", now=T0)
    auth.reset_password(session, token, "my own password", now=T0 + timedelta(hours=1))
    raw, _ = auth.sign_in(session, "new.person@example.com", "my own password", now=T0 + timedelta(hours=1))
    info = auth.resolve(session, raw, now=T0 + timedelta(hours=1))
    assert (info.org_id, info.role) == (o.id, Role.FINANCE)
    assert [m.pending for m in users.list_members(session, f.actor(admin, o)) if m.email == view.email] == [False]
    assert session.exec(select(AuditEvent).where(AuditEvent.action == "user.invited")).one().org_id == o.id


def test_invite_an_existing_user_adds_a_membership_without_a_new_password_once_accepted(session, team):
    o, people = team
    elsewhere = f.org(session, name="Другая")
    known = f.user(session, elsewhere, Role.OWNER, email="known@example.com", password_hash=auth.hash_password(PW))
    users.invite(session, f.actor(people[Role.OWNER], o), email="known@example.com", name="ignored",
                 role=Role.ADMIN, now=T0)
    assert count(session, User, User.email == "known@example.com") == 1
    assert membership(session, known, o).role == Role.ADMIN
    assert count(session, PasswordResetToken) == 0
    mail = session.exec(select(Notification).where(Notification.user_id == known.id)).one()
    assert "/reset/" not in mail.body_text and "ООО «Команда»" in mail.body_text
    raw, _ = auth.sign_in(session, "known@example.com", PW, now=T0)
    assert {o_["id"] for o_ in auth.resolve(session, raw, now=T0).orgs} == {elsewhere.id}  # until accepted
    (invitation,) = users.pending_invitations(session, known.id)
    users.accept_invitation(session, known.id, invitation.membership_id)
    assert {o_["id"] for o_ in auth.resolve(session, raw, now=T0).orgs} == {o.id, elsewhere.id}


def test_invite_someone_already_in_the_organisation_is_a_conflict(session, team):
    o, people = team
    before = snapshot(session)
    with pytest.raises(Conflict) as exc:
        users.invite(session, f.actor(people[Role.OWNER], o), email="ADMIN@team.example", name="x", role=Role.ADMIN)
    assert exc.value.key == "users.already_member"
    membership(session, people[Role.ADMIN], o).is_active = False
    session.commit()
    with pytest.raises(Conflict) as exc:
        users.invite(session, f.actor(people[Role.OWNER], o), email="admin@team.example", name="x", role=Role.ADMIN)
    assert exc.value.key == "users.member_inactive"
    assert snapshot(session)[1:] == before[1:]


@pytest.mark.parametrize("bad", [dict(email="nope"), dict(role="superuser"), dict(role=None), dict(name="")])
def test_invite_validates_its_input(sqlite_engine, bad):
    with Session(sqlite_engine, expire_on_commit=False) as session:
        o = f.org(session)
        owner = f.user(session, o, Role.OWNER)
        data = dict(email="x@example.com", name="X", role=Role.ADMIN) | bad
        with pytest.raises(InvalidInput):
            users.invite(session, f.actor(owner, o), **data)
        assert count(session, User) == 1


# --- who may do what -------------------------------------------------------------------------

def test_an_admin_cannot_make_or_touch_an_owner(session, team):
    o, people = team
    admin = f.actor(people[Role.ADMIN], o)
    owner_m = membership(session, people[Role.OWNER], o)
    fin_m = membership(session, people[Role.FINANCE], o)
    before = snapshot(session)
    for call in (
        lambda: users.invite(session, admin, email="boss@example.com", name="Boss", role=Role.OWNER),
        lambda: users.change_role(session, admin, fin_m.id, Role.OWNER),
        lambda: users.change_role(session, admin, owner_m.id, Role.ADMIN),
        lambda: users.deactivate(session, admin, owner_m.id),
        lambda: users.reactivate(session, admin, owner_m.id),
    ):
        with pytest.raises(Forbidden) as exc:
            call()
        assert exc.value.key == "error.owner_only"
    assert snapshot(session) == before
    # but an admin manages admins and financial managers
    assert users.change_role(session, admin, fin_m.id, Role.ADMIN).role == Role.ADMIN
    assert users.deactivate(session, admin, fin_m.id).is_active is False
    assert users.reactivate(session, admin, fin_m.id).is_active is True


def test_a_financial_manager_reads_the_list_but_changes_nothing(session, team):
    o, people = team
    fin = f.actor(people[Role.FINANCE], o)
    admin_m = membership(session, people[Role.ADMIN], o)
    own_m = membership(session, people[Role.FINANCE], o)
    assert {m.email for m in users.list_members(session, fin)} == {
        "owner@team.example", "admin@team.example", "finance@team.example"}
    before = snapshot(session)
    for call in (
        lambda: users.invite(session, fin, email="friend@example.com", name="Friend", role=Role.FINANCE),
        lambda: users.change_role(session, fin, admin_m.id, Role.FINANCE),
        lambda: users.change_role(session, fin, own_m.id, Role.ADMIN),  # no self-promotion either
        lambda: users.deactivate(session, fin, admin_m.id),
        lambda: users.reactivate(session, fin, admin_m.id),
    ):
        with pytest.raises(Forbidden) as exc:
            call()
        assert exc.value.key == "error.read_only"
    assert snapshot(session) == before


def test_the_last_owner_can_be_neither_demoted_nor_deactivated(session, team):
    o, people = team
    owner = f.actor(people[Role.OWNER], o)
    owner_m = membership(session, people[Role.OWNER], o)
    before = snapshot(session)
    with pytest.raises(Conflict) as exc:
        users.change_role(session, owner, owner_m.id, Role.ADMIN)
    assert exc.value.key == "users.last_owner"
    with pytest.raises(Conflict):
        users.deactivate(session, Actor.system(o.id), owner_m.id)
    assert snapshot(session) == before
    # with a second owner the first may step down
    admin_m = membership(session, people[Role.ADMIN], o)
    users.change_role(session, owner, admin_m.id, Role.OWNER)
    assert users.change_role(session, owner, owner_m.id, Role.ADMIN).role == Role.ADMIN
    # and now the other one is the last owner
    new_owner = f.actor(people[Role.ADMIN], o)
    with pytest.raises(Conflict):
        users.change_role(session, new_owner, admin_m.id, Role.FINANCE)


def test_an_inactive_second_owner_does_not_count_as_an_owner(session, team):
    o, people = team
    owner = f.actor(people[Role.OWNER], o)
    admin_m = membership(session, people[Role.ADMIN], o)
    users.change_role(session, owner, admin_m.id, Role.OWNER)
    users.deactivate(session, owner, admin_m.id)
    with pytest.raises(Conflict):
        users.change_role(session, owner, membership(session, people[Role.OWNER], o).id, Role.ADMIN)


def test_an_owner_can_deactivate_another_owner_but_nobody_themselves(session, team):
    o, people = team
    owner = f.actor(people[Role.OWNER], o)
    admin_m = membership(session, people[Role.ADMIN], o)
    users.change_role(session, owner, admin_m.id, Role.OWNER)
    assert users.deactivate(session, owner, admin_m.id).is_active is False
    with pytest.raises(Conflict) as exc:
        users.deactivate(session, f.actor(people[Role.OWNER], o), membership(session, people[Role.OWNER], o).id)
    assert exc.value.key == "users.cannot_deactivate_self"


def test_a_deactivated_member_loses_access_and_gets_it_back(session, team):
    o, people = team
    raw, _ = auth.sign_in(session, "admin@team.example", PW, now=T0)
    admin_m = membership(session, people[Role.ADMIN], o)
    users.deactivate(session, f.actor(people[Role.OWNER], o), admin_m.id)
    with pytest.raises(NotAuthenticated):
        auth.resolve(session, raw, now=T0)
    with pytest.raises(Forbidden):
        users.list_members(session, f.actor(people[Role.ADMIN], o))
    users.reactivate(session, f.actor(people[Role.OWNER], o), admin_m.id)
    raw, _ = auth.sign_in(session, "admin@team.example", PW, now=T0)
    assert auth.resolve(session, raw, now=T0).role == Role.ADMIN
    actions = [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.id)).all()
               if e.action != "user.signed_in"]
    assert actions == ["user.deactivated", "user.reactivated"]


def test_a_user_of_another_organisation_sees_and_changes_nothing(session, team):
    o, people = team
    other = f.org(session, name="Чужая")
    stranger = f.user(session, other, Role.OWNER)
    victim_m = membership(session, people[Role.ADMIN], o)
    # acting in the other organisation with a membership id of ours: NotFound, as if missing
    for call in (lambda: users.change_role(session, f.actor(stranger, other), victim_m.id, Role.FINANCE),
                 lambda: users.deactivate(session, f.actor(stranger, other), victim_m.id),
                 lambda: users.reactivate(session, f.actor(stranger, other), victim_m.id),
                 lambda: users.change_role(session, f.actor(stranger, other), 999999, Role.FINANCE),
                 lambda: users.change_role(session, f.actor(stranger, other), "1", Role.FINANCE)):
        with pytest.raises(NotFound):
            call()
    # claiming to act in our organisation: not a member
    with pytest.raises(Forbidden):
        users.list_members(session, Actor(user_id=stranger.id, org_id=o.id))
    with pytest.raises(Forbidden):
        users.deactivate(session, Actor(user_id=stranger.id, org_id=o.id), victim_m.id)
    assert [m.email for m in users.list_members(session, f.actor(stranger, other))] == [stranger.email]
    assert membership(session, people[Role.ADMIN], o).is_active


def test_list_members_puts_active_first(session, team):
    o, people = team
    users.deactivate(session, f.actor(people[Role.OWNER], o), membership(session, people[Role.ADMIN], o).id)
    rows = users.list_members(session, f.actor(people[Role.FINANCE], o))
    assert [r.is_active for r in rows] == [True, True, False]
    assert [r.email for r in users.list_members(session, f.actor(people[Role.OWNER], o),
                                                include_inactive=False)] == ["finance@team.example",
                                                                             "owner@team.example"]


# --- profile ---------------------------------------------------------------------------------

def test_update_profile_changes_name_and_language(session, team):
    o, people = team
    u = people[Role.ADMIN]
    p = users.update_profile(session, u.id, name="  Алишер   Усманов ", locale="en")
    assert (p.name, p.locale) == ("Алишер Усманов", "en")
    assert users.get_profile(session, u.id) == p
    raw, _ = auth.sign_in(session, "admin@team.example", PW, now=T0)
    assert auth.resolve(session, raw, now=T0).locale == "en"


@pytest.mark.parametrize("name, locale", [("", "ru"), ("Name", "de"), ("Name", None), ("x" * 256, "ru")])
def test_update_profile_refuses_bad_input(sqlite_engine, name, locale):
    with Session(sqlite_engine, expire_on_commit=False) as session:
        u = f.user(session, None, name="Old")
        with pytest.raises(InvalidInput):
            users.update_profile(session, u.id, name=name, locale=locale)
        assert users.get_profile(session, u.id).name == "Old"


def test_last_sign_in_shown_to_an_organisation_is_only_activity_in_that_organisation(session):
    a, b = f.org(session, name="A"), f.org(session, name="B")
    owner_a = f.user(session, a, Role.OWNER, email="owner-a@example.com")
    shared = f.user(session, b, Role.ADMIN, email="shared@example.com", password_hash=auth.hash_password("long-enough-1"))
    session.add(Membership(user_id=shared.id, org_id=a.id, role=Role.FINANCE))
    session.commit()
    raw, _ = auth.sign_in(session, "shared@example.com", "long-enough-1")
    info = auth.resolve(session, raw)
    if info.org_id != b.id:
        auth.switch_organisation(session, raw, b.id)
    rows = {m.email: m for m in users.list_members(session, f.actor(owner_a, a))}
    assert rows["shared@example.com"].last_login_at is None  # worked in B only: A learns nothing


def test_inviting_an_existing_account_waits_for_its_consent_and_reveals_nothing(session):
    from noventiq_panel.services.core import authz

    a, b = f.org(session, name="A"), f.org(session, name="B")
    owner_a = f.user(session, a, Role.OWNER, email="owner-a@example.com")
    victim = f.user(session, b, Role.OWNER, email="victim@example.com", name="Настоящее Имя",
                    password_hash=auth.hash_password("long-enough-1"))
    users.invite(session, f.actor(owner_a, a), email="victim@example.com", name="Кто угодно", role=Role.ADMIN)
    row = next(m for m in users.list_members(session, f.actor(owner_a, a)) if m.email == "victim@example.com")
    assert row.pending and row.name == "" and row.last_login_at is None
    with pytest.raises(Forbidden):  # the membership gives no access yet
        authz.can_read(session, Actor(user_id=victim.id, org_id=a.id))
    raw, _ = auth.sign_in(session, "victim@example.com", "long-enough-1")
    assert [o["id"] for o in auth.resolve(session, raw).orgs] == [b.id]
    (invitation,) = users.pending_invitations(session, victim.id)
    assert invitation.org_name == "A"
    with pytest.raises(NotFound):  # nobody else can answer it
        users.accept_invitation(session, owner_a.id, invitation.membership_id)
    users.accept_invitation(session, victim.id, invitation.membership_id)
    assert authz.can_read(session, Actor(user_id=victim.id, org_id=a.id)).role == Role.ADMIN
    assert users.pending_invitations(session, victim.id) == []
    row = next(m for m in users.list_members(session, f.actor(owner_a, a)) if m.email == "victim@example.com")
    assert row.name == "Настоящее Имя" and not row.pending


def test_a_declined_invitation_is_removed_and_blocks_a_new_one_for_thirty_days(session):
    a, b = f.org(session, name="A"), f.org(session, name="B")
    owner_a = f.user(session, a, Role.OWNER, email="owner-a@example.com")
    other = f.user(session, b, Role.OWNER, email="other@example.com", password_hash=auth.hash_password("long-enough-1"))
    users.invite(session, f.actor(owner_a, a), email="other@example.com", name="X", role=Role.FINANCE)
    (invitation,) = users.pending_invitations(session, other.id)
    users.decline_invitation(session, other.id, invitation.membership_id)
    assert session.exec(select(Membership).where(Membership.org_id == a.id, Membership.user_id == other.id)).first() is None
    with pytest.raises(NotFound):
        users.accept_invitation(session, other.id, invitation.membership_id)
    with pytest.raises(Conflict) as exc:  # no re-inviting at once (issue 14: invitations as a relay)
        users.invite(session, f.actor(owner_a, a), email="other@example.com", name="X", role=Role.FINANCE)
    assert exc.value.key == "users.invitation_declined"
    assert users.pending_invitations(session, other.id) == []
    later = datetime.now(timezone.utc) + users.DECLINE_BLOCK + timedelta(minutes=1)
    users.invite(session, f.actor(owner_a, a), email="other@example.com", name="X", role=Role.FINANCE, now=later)
    assert len(users.pending_invitations(session, other.id)) == 1


def test_invitations_are_throttled_per_organisation_and_per_inviter(session):
    a = f.org(session, name="A")
    owner = f.user(session, a, Role.OWNER, email="owner-a@example.com")
    admin = f.user(session, a, Role.ADMIN, email="admin-a@example.com")
    for i in range(users.INVITES_PER_INVITER):
        users.invite(session, f.actor(owner, a), email=f"p{i}@example.com", name="P", role=Role.FINANCE)
    before = session.exec(select(func.count()).select_from(Notification)).one()
    with pytest.raises(Throttled):
        users.invite(session, f.actor(owner, a), email="one-more@example.com", name="P", role=Role.FINANCE)
    assert session.exec(select(func.count()).select_from(Notification)).one() == before
    for i in range(users.INVITES_PER_ORG - users.INVITES_PER_INVITER):
        users.invite(session, f.actor(admin, a), email=f"q{i}@example.com", name="Q", role=Role.FINANCE)
    with pytest.raises(Throttled):  # the organisation's limit, whoever invites
        users.invite(session, f.actor(admin, a), email="q-more@example.com", name="Q", role=Role.FINANCE)


def test_the_invitation_subject_carries_no_text_of_the_inviters_choosing(session):
    a = f.org(session, name="ООО «Бесплатные деньги: перейдите по ссылке»")
    owner = f.user(session, a, Role.OWNER, name="Служба безопасности банка")
    users.invite(session, f.actor(owner, a), email="target@example.com", name="Жертва", role=Role.FINANCE)
    mail = session.exec(select(Notification).where(Notification.kind == "invite")).one()
    assert mail.subject == "Приглашение в панель Noventiq"
    assert "Бесплатные деньги" in mail.body_text  # shown as data in the body


def test_every_pending_invitee_is_listed_alike_whether_the_address_had_an_account_or_not(session):
    a, b = f.org(session, name="A"), f.org(session, name="B")
    owner = f.user(session, a, Role.OWNER)
    f.user(session, b, Role.OWNER, email="has-account@example.com", name="Скрытое Имя",
           password_hash=auth.hash_password("long-enough-1"))
    users.invite(session, f.actor(owner, a), email="has-account@example.com", name="Имя 1", role=Role.ADMIN)
    users.invite(session, f.actor(owner, a), email="no-account@example.com", name="Имя 2", role=Role.ADMIN)
    rows = {m.email: (m.name, m.pending, m.last_login_at) for m in users.list_members(session, f.actor(owner, a))}
    assert rows["has-account@example.com"] == rows["no-account@example.com"] == ("", True, None)
