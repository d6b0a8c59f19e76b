from django.apps import AppConfig


class ChatkitApiConfig(AppConfig):
    name = "chatkit_api"
    verbose_name = "ChatKit transcripts"
