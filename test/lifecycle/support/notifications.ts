/** Reading a user's notifications whole, and describing them in a form assertions can compare. */
import type { Notification } from "../../../gen/parley/v1/notification_pb.ts";
import { NotificationKind } from "../../../gen/parley/v1/notification_pb.ts";
import type { Clients } from "../../helpers/test-server.ts";
import { walkPages } from "./pages.ts";

/** Every notification of the caller, newest first, following next_page_token. */
export async function allNotifications(clients: Clients, pageSize = 100): Promise<Notification[]> {
  const pages = await walkPages(pageSize, async (pageToken) => {
    const res = await clients.notifications.listNotifications({ pageSize, pageToken });
    return { items: res.notifications, nextPageToken: res.nextPageToken };
  });
  return pages.flat();
}

const KIND_NAMES: Record<number, string> = {
  [NotificationKind.MENTION]: "mention",
  [NotificationKind.REPLY]: "reply",
  [NotificationKind.ADDED_TO_CONVERSATION]: "added",
};

/** "mention", "mention(everyone)", "reply" or "added": what kind of notification, nothing more. */
export function kindOf(n: Pick<Notification, "kind" | "viaEveryone">): string {
  return `${KIND_NAMES[n.kind] ?? `kind${n.kind}`}${n.viaEveryone ? "(everyone)" : ""}`;
}

/** "mention#3 by alice", "mention(everyone)#5 by alice", "reply#4 by bob", "added by alice". */
export function describeNotification(n: Pick<Notification, "kind" | "messageSeq" | "actorId" | "viaEveryone"> | undefined): string {
  if (!n) return "(none)";
  const kind = KIND_NAMES[n.kind] ?? `kind${n.kind}`;
  const seq = n.kind === NotificationKind.ADDED_TO_CONVERSATION ? "" : `#${n.messageSeq}`;
  return `${kind}${n.viaEveryone ? "(everyone)" : ""}${seq} by ${n.actorId}`;
}
