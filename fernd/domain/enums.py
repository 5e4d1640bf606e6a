"""Enumerations of the labour domain; each value is its wire spelling."""

import enum


class LabourPhase(enum.Enum):
    PLANNED = "PLANNED"
    EARLY = "EARLY"
    ACTIVE = "ACTIVE"
    TRANSITION = "TRANSITION"
    PUSHING = "PUSHING"
    COMPLETE = "COMPLETE"

    @property
    def ordinal(self) -> int:
        return _PHASE_ORDER[self]


_PHASE_ORDER = {phase: index for index, phase in enumerate(LabourPhase)}


class LabourUpdateType(enum.Enum):
    ANNOUNCEMENT = "ANNOUNCEMENT"
    STATUS_UPDATE = "STATUS_UPDATE"
    PRIVATE_NOTE = "PRIVATE_NOTE"


class SubscriberRole(enum.Enum):
    BIRTH_PARTNER = "BIRTH_PARTNER"
    SUPPORT_PERSON = "SUPPORT_PERSON"
    LOVED_ONE = "LOVED_ONE"


class SubscriberStatus(enum.Enum):
    SUBSCRIBED = "SUBSCRIBED"
    UNSUBSCRIBED = "UNSUBSCRIBED"
    REQUESTED = "REQUESTED"
    REMOVED = "REMOVED"
    BLOCKED = "BLOCKED"


class SubscriberContactMethod(enum.Enum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    WHATSAPP = "WHATSAPP"


class SubscriberAccessLevel(enum.Enum):
    BASIC = "BASIC"
    SUPPORTER = "SUPPORTER"


class NotificationChannel(enum.Enum):
    EMAIL = "EMAIL"
    SMS = "SMS"
    WHATSAPP = "WHATSAPP"


class StatisticsRange(enum.Enum):
    THIRTY_MINUTES = "30mins"
    SIXTY_MINUTES = "60mins"
    ALL = "all"


class Alert(enum.Enum):
    CALL_MIDWIFE = "callMidwife"
    GO_TO_HOSPITAL = "goToHospital"
    PREPARE_FOR_HOSPITAL = "prepareForHospital"


class Capability(enum.Enum):
    AdvanceLabourPhase = "AdvanceLabourPhase"
    PostApplicationLabourUpdates = "PostApplicationLabourUpdates"
    ManageLabour = "ManageLabour"
    ExecuteLabourCommand = "ExecuteLabourCommand"
    ReadLabour = "ReadLabour"
    UpdateSubscriptionAccessLevel = "UpdateSubscriptionAccessLevel"
    ManageOwnSubscription = "ManageOwnSubscription"
    ManageLabourSubscriptions = "ManageLabourSubscriptions"
    ManageSubscriptionToken = "ManageSubscriptionToken"
    ReadSubscriptions = "ReadSubscriptions"
    ReadOwnSubscription = "ReadOwnSubscription"
    Administer = "Administer"
