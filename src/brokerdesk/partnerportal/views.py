"""IB portal pages (the start: the layout the partner pages will fill)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The IB portal's start page."""
    return render(request, "partnerportal/dashboard.html")
