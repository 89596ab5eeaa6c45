from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from portal import views
from portal.forms import LoginForm

app_name = "portal"

urlpatterns = [
    path("", views.home, name="home"),
    path("registro/", views.register, name="register"),
    path("registro/confirmar/<str:token>/", views.confirm, name="confirm"),
    path(
        "entrar/",
        auth_views.LoginView.as_view(
            template_name="portal/login.html",
            authentication_form=LoginForm,
            next_page="portal:profile",
        ),
        name="login",
    ),
    path("salir/", auth_views.LogoutView.as_view(next_page="portal:login"), name="logout"),
    path("perfil/", views.profile, name="profile"),
    path("perfil/censo.json", views.census_status, name="census_status"),
    path("consultas/<int:user_id>/actualizar/", views.refresh, name="refresh"),
]
