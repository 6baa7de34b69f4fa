export { DigestSender, type DigestSenderOptions, type DigestRound } from "./digest-sender.ts";
export { createSmtpMailer, type Mailer, type OutgoingMail } from "./mailer.ts";
