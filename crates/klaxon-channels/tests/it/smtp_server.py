"""A real SMTP server for Klaxon's e-mail tests: Debian's aiosmtpd.

Usage: python3 smtp_server.py CONFIG.json

CONFIG holds: folder (where messages are saved), tls ("starttls",
"implicit" or "none"), cert and key (PEM files, for TLS), user and password
(AUTH required when set), refuse (recipients answered 550), defer_data
(how many DATA commands to answer 451 first). Prints the port it listens
on (127.0.0.1, a free port), then serves until killed. Each accepted
message is saved as message-N.eml with message-N.json (envelope, TLS,
authentication); each deferred one as deferred-N.eml.
"""

import asyncio
import json
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, config):
        self.config = config
        self.defer = config.get("defer_data", 0)
        self.accepted = 0
        self.deferred = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.config.get("refuse", []):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        folder = self.config["folder"]
        if self.defer > 0:
            self.defer -= 1
            self.deferred += 1
            with open(os.path.join(folder, f"deferred-{self.deferred}.eml"), "wb") as f:
                f.write(envelope.original_content)
            return "451 4.3.0 Try again later"
        self.accepted += 1
        base = os.path.join(folder, f"message-{self.accepted}")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
        }
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 2.0.0 Ok: queued"


def main():
    with open(sys.argv[1]) as f:
        config = json.load(f)
    tls = config.get("tls", "none")
    context = None
    if tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config["cert"], config["key"])
    user = config.get("user")
    password = config.get("password")

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    handler = Handler(config)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory():
        return SMTP(
            handler,
            hostname="localhost",
            tls_context=context if tls == "starttls" else None,
            require_starttls=tls == "starttls",
            authenticator=authenticator if user else None,
            auth_required=bool(user),
            # Implicit TLS is TLS from the start, which aiosmtpd does not see.
            auth_require_tls=tls == "starttls",
            loop=loop,
        )

    server = loop.run_until_complete(
        loop.create_server(factory, "127.0.0.1", 0, ssl=context if tls == "implicit" else None)
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    loop.run_forever()


if __name__ == "__main__":
    main()
