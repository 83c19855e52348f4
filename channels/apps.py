from django.apps import AppConfig


class ChannelsConfig(AppConfig):
    name = "channels"
    label = "approver_channels"  # "channels" is Django Channels' label; keep clear of it

    def ready(self) -> None:
        from channels import registry

        # The outbox finds each channel's sender by its name (the delivery's kind).
        registry.install_senders()
