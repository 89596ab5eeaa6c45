"""placeholder"""


def connect() -> None: ...
