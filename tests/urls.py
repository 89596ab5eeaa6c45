from django.contrib import admin
from django.urls import path

from census.observability.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics/census", metrics_view, name="census-metrics"),
]
