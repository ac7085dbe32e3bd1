"""A client's request: reading and checking its OpenAI body, its prompt's tokens, its keys on the aiohttp request,
the guard on its connection, and the OpenAI-shaped errors it may be answered with."""
