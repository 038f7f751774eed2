"""The one exception type for errors a user can cause (bad file, config, checkpoint, folder)."""


class AirNetError(Exception):
    """A problem the user can fix; the message says what is wrong and what to do."""


class ImageTooLarge(AirNetError):
    """An image whose declared size is over the pixel limit, refused before it is decoded (HTTP 413)."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type's name where it has none), for one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
