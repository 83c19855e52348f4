"""`make dev`'s set-up (manage.py dev_setup): what it prints keeps working from one start to
the next: the same demo API key and admin password, no pile of keys."""

import io
import re

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError

from organizations.models import ApiKey
from organizations.services import api_key_revoke
from tests.conftest import client_for


@pytest.fixture
def dev(settings, tmp_path):
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path  # where the credentials are kept between starts


def start() -> tuple[str, str]:
    out = io.StringIO()
    call_command("dev_setup", stdout=out)
    text = out.getvalue()
    key = re.search(r"Demo API key \(organization 'demo'\): (\S+)", text).group(1)
    password = re.search(r"user admin, password (\S+)", text).group(1)
    return key, password


def test_a_second_start_prints_the_same_working_key_and_password(dev, db):
    first_key, first_password = start()
    second_key, second_password = start()

    assert (second_key, second_password) == (first_key, first_password)
    assert ApiKey.objects.filter(name="make dev").count() == 1
    assert client_for(second_key).get("/decisions").status_code == 200
    assert authenticate(username="admin", password=second_password) is not None


def test_a_revoked_demo_key_is_replaced_by_a_new_one(dev, db):
    first_key, _ = start()
    api_key_revoke(key=ApiKey.objects.get(name="make dev"))

    second_key, _ = start()

    assert second_key != first_key
    assert client_for(second_key).get("/decisions").status_code == 200


def test_an_admin_password_the_developer_changed_is_kept(dev, db, django_user_model):
    start()
    admin = django_user_model.objects.get(username="admin")
    admin.set_password("chosen-by-the-developer")
    admin.save()

    out = io.StringIO()
    call_command("dev_setup", stdout=out)
    call_command("dev_setup", stdout=out)

    assert "user admin, password (the one you set)" in out.getvalue()
    assert authenticate(username="admin", password="chosen-by-the-developer") is not None


def test_it_refuses_to_run_without_debug(db, settings):
    settings.DEBUG = False

    with pytest.raises(CommandError, match="DEBUG=1"):
        call_command("dev_setup", stdout=io.StringIO())
