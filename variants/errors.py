"""The one error type for a variant that cannot be built."""


class VariantError(ValueError):
    """A variant part or combination is unknown, out of range or meaningless.

    The message names the field, the value and what is allowed.
    """
