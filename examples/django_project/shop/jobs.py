"""The shop's jobs (`manage.py que_work` imports every app's jobs module)."""

from django.core.mail import send_mail

from que_core import Job
from shop.models import Order


class ConfirmOrder(Job):
    queue = "default"

    def run(self, order_id: int) -> None:
        order = Order.objects.get(pk=order_id)
        send_mail(  # itself a job, through que_core.contrib.django.mail
            f"Order {order.pk} confirmed",
            "Thank you for your order.",
            None,
            [order.email],
        )
        order.confirmed = True
        order.save(update_fields=["confirmed"])
