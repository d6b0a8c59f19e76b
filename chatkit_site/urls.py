from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("api/", include("chatkit_api.urls")),
    path("admin/", admin.site.urls),
]

handler404 = "chatkit_api.apis.not_found"
handler500 = "chatkit_api.apis.server_error"
