from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from shop.jobs import ConfirmOrder
from shop.models import Order


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        order = Order.objects.create(email=request.POST["email"])
        # No conn=: Django's connection, in this atomic block. If the block
        # rolls back, the job was never enqueued.
        ConfirmOrder.enqueue(order.pk)
    return JsonResponse({"id": order.pk}, status=201)


def order_detail(request: HttpRequest, pk: int) -> JsonResponse:
    order = get_object_or_404(Order, pk=pk)
    return JsonResponse({"id": order.pk, "email": order.email, "confirmed": order.confirmed})
