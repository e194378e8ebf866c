"""imapgw: the 4711 purpose-string gateway of seed 000, faithful on the wire and safe inside.

  main.py      the imapgw program: usage, settings, the forking server
  session.py   one session: banner, purpose string, the purpose carried out, one reply
  purpose.py   the purpose string: reading, parsing, masking the password for the log
  client.py    the gateway's IMAP client (quoting comes from imapd/strings.py)
  replies.py   every line a CGI client can read from the gateway

It talks to an IMAP server over a socket, like any IMAP client, and imports none of imapd's
server modules.
"""
