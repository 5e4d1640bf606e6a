// Parsing and formatting of times, durations and the domain's enum values.

const FRACTION = /\.(\d{3})\d*/;

// Parse a datetime written by fernd, such as 2024-05-01T10:01:05.250000Z, to
// milliseconds since the epoch. Extra fractional digits are cut to three,
// the precision of a JavaScript date.
export function parseTime(text) {
  if (!text) {
    return null;
  }
  return Date.parse(text.replace(FRACTION, ".$1"));
}

export function isoTime(milliseconds) {
  return new Date(milliseconds).toISOString();
}

function pad(value) {
  return String(value).padStart(2, "0");
}

// Format seconds as m:ss, or h:mm:ss from one hour on.
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) {
    return "–";
  }
  const whole = Math.max(0, Math.round(seconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = whole % 60;
  if (hours > 0) {
    return `${hours}:${pad(minutes)}:${pad(rest)}`;
  }
  return `${minutes}:${pad(rest)}`;
}

// Read a duration aloud: "1 minute 5 seconds".
export function spokenDuration(seconds) {
  const whole = Math.max(0, Math.round(seconds));
  const minutes = Math.floor(whole / 60);
  const rest = whole % 60;
  const parts = [];
  if (minutes > 0) {
    parts.push(`${minutes} minute${minutes === 1 ? "" : "s"}`);
  }
  if (rest > 0 || minutes === 0) {
    parts.push(`${rest} second${rest === 1 ? "" : "s"}`);
  }
  return parts.join(" ");
}

export function formatClock(milliseconds) {
  return new Date(milliseconds).toLocaleTimeString([], {
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function formatDateTime(milliseconds) {
  return new Date(milliseconds).toLocaleString([], {
    dateStyle: "medium",
    timeStyle: "short",
  });
}

export function formatDate(milliseconds) {
  return new Date(milliseconds).toLocaleDateString([], {
    timeZone: "UTC",
    dateStyle: "long",
  });
}

// The value of a datetime-local input, in local time, for `milliseconds`.
export function toLocalInput(milliseconds) {
  const date = new Date(milliseconds);
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`
  );
}

// Milliseconds since the epoch of a datetime-local input's value, read as
// local time, or null when the value is empty or invalid.
export function fromLocalInput(value) {
  if (!value) {
    return null;
  }
  const milliseconds = new Date(value).getTime();
  return Number.isNaN(milliseconds) ? null : milliseconds;
}

export const PHASES = {
  PLANNED: "Planned",
  EARLY: "Early labour",
  ACTIVE: "Active labour",
  TRANSITION: "Transition",
  PUSHING: "Pushing",
  COMPLETE: "Complete",
};

export const UPDATE_TYPES = {
  STATUS_UPDATE: "Status update",
  ANNOUNCEMENT: "Announcement",
  PRIVATE_NOTE: "Private note",
};

export const ROLES = {
  BIRTH_PARTNER: "Birth partner",
  SUPPORT_PERSON: "Support person",
  LOVED_ONE: "Loved one",
};

export const STATUSES = {
  REQUESTED: "Waiting for approval",
  SUBSCRIBED: "Following",
  UNSUBSCRIBED: "Unsubscribed",
  REMOVED: "Removed",
  BLOCKED: "Blocked",
};

export const CONTACT_METHODS = {
  EMAIL: "Email",
  SMS: "SMS",
  WHATSAPP: "WhatsApp",
};

// Messages fernd posts itself, stored as a code in the update's message.
const APPLICATION_MESSAGES = {
  labour_begun: "Labour has begun",
};

export function updateMessage(update) {
  if (update.application_generated) {
    return APPLICATION_MESSAGES[update.message] || update.message;
  }
  return update.message;
}

export function labourTitle(labour) {
  return labour.labour_name || `Labour of ${labour.mother_name}`;
}
