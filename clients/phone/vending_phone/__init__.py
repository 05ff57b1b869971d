"""A simulated shopper's phone for Vending Hub: what the PimpMyCase web app does after the
QR scan (CONTRACT §3), for tests, ``hub demo`` and benchmarks.

    phone = PhoneSimulator("http://127.0.0.1:8000")
    await phone.scan(qr_url)                 # register-user; keeps phone_token
    await phone.design()                     # brand_selected → design_complete → payment_reached
    await phone.order_summary()              # "Pay via Machine", with a generated PNG design
"""

from .sim import ORDER_DATA, PhoneSimulator, data_url, design_png, parse_qr_url

__all__ = ["PhoneSimulator", "ORDER_DATA", "data_url", "design_png", "parse_qr_url"]
