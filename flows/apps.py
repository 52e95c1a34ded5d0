from django.apps import AppConfig


class FlowsConfig(AppConfig):
    name = "flows"
    verbose_name = "Flows"

    def ready(self) -> None:
        # Every new flow joins the lookup filter (a post_save signal), whoever creates it.
        from flows import lookup  # noqa: F401
