/**
 * AddReaction and RemoveReaction, the MessageService RPCs that write reactions. They validate
 * the request and hand it to the ReactionBatcher, which checks membership (a non-member or a
 * missing message is NOT_FOUND "message") and commits it with its neighbours.
 */
import { create } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import {
  AddReactionResponseSchema,
  RemoveReactionResponseSchema,
  type AddReactionRequest,
  type AddReactionResponse,
  type RemoveReactionRequest,
  type RemoveReactionResponse,
} from "../../gen/parley/v1/message_service_pb.ts";
import { requireCaller } from "../auth/user-context.ts";
import { requireSeq, requireUuid } from "../validation.ts";
import { requireEmoji } from "./emoji.ts";
import type { ReactionBatcher, ReactionCommand } from "./reaction-batcher.ts";

export async function addReaction(batcher: ReactionBatcher, req: AddReactionRequest, ctx: HandlerContext): Promise<AddReactionResponse> {
  const { changed, reactions } = await batcher.submit(toCommand("add", req, ctx));
  return create(AddReactionResponseSchema, { added: changed, reactions });
}

export async function removeReaction(batcher: ReactionBatcher, req: RemoveReactionRequest, ctx: HandlerContext): Promise<RemoveReactionResponse> {
  const { changed, reactions } = await batcher.submit(toCommand("remove", req, ctx));
  return create(RemoveReactionResponseSchema, { removed: changed, reactions });
}

/** Validates the request completely before it is queued, so a batch never holds a malformed one. */
function toCommand(op: ReactionCommand["op"], req: AddReactionRequest | RemoveReactionRequest, ctx: HandlerContext): ReactionCommand {
  const { userId } = requireCaller(ctx);
  return {
    op,
    conversationId: requireUuid("conversation_id", req.conversationId),
    seq: requireSeq("seq", req.seq),
    emoji: requireEmoji("emoji", req.emoji),
    userId,
  };
}
