from django.core.management.base import BaseCommand

from audit.checkpoints import checkpoints_publish
from audit.sealing import seal_until_done


class Command(BaseCommand):
    help = (
        "Seal the audit trail now: link every committed event into its organization's chain, sign a "
        "checkpoint for each chain that grew and send checkpoints to the configured sinks. Beat does "
        "this every AUDIT_SEAL_SECONDS; this is for operators and scripts (before an export, say)."
    )

    def handle(self, *args, **options):
        sealed = seal_until_done()
        checkpoints_publish()
        self.stdout.write(f"sealed {sealed} event(s)")
