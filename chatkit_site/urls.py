from django.contrib import admin
from django.urls import include, path

from chatkit_api import pages
from chatkit_api.admin_sign_in import ThrottledAdminAuthenticationForm

admin.site.login_form = ThrottledAdminAuthenticationForm

urlpatterns = [
    path("api/", include("chatkit_api.urls")),
    path("api/schema/", pages.api_schema, name="api-schema"),
    path("api/docs/", pages.api_docs, name="api-docs"),
    path("admin/", admin.site.urls),
    path("", pages.try_it, name="try-it"),
    path("favicon.ico", pages.favicon),
]

handler404 = "chatkit_api.apis.not_found"
handler500 = "chatkit_api.apis.server_error"
