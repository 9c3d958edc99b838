"""The official `openai` Python client against a real `terse serve`.

Run by tests/openai_client.rs, which starts the servers and passes:
    openai_client.py OPEN_BASE_URL KEYED_BASE_URL KEY MODEL CTX
Prints one line per check and a closing "openai: N passed, N failed"; exits 1 on any
failure.
"""

import json
import sys
import traceback
import urllib.request

import openai

OPEN, KEYED, KEY, MODEL, CTX = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
client = openai.OpenAI(base_url=OPEN + "/v1", api_key="unused", max_retries=0, timeout=120)
HELLO = [{"role": "user", "content": "Say hello in five words."}]
COUNT = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]


def chat(**kw):
    args = dict(model=MODEL, messages=HELLO, max_tokens=8, temperature=0)
    args.update(kw)
    return client.chat.completions.create(**args)


def terse_usage(response):
    return response.usage.model_extra["terse"]


def health(base):
    with urllib.request.urlopen(base + "/health", timeout=10) as r:
        return r.status


def expect_400(fn):
    try:
        fn()
    except openai.BadRequestError as e:
        return e
    raise AssertionError("expected a 400")


def test_chat():
    r = chat()
    c = r.choices[0]
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert c.message.role == "assistant" and c.message.content, c
    assert c.finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 0 and 0 < u.completion_tokens <= 8
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.completion_tokens_details.reasoning_tokens == 0
    t = terse_usage(r)
    assert t["strategy"] == "none" and t["cost_tokens"] == u.completion_tokens, t


def test_completions():
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=6, temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text.strip().startswith("5"), r.choices[0].text
    assert r.usage.completion_tokens == 6 and r.choices[0].finish_reason == "length"


def test_streaming_without_usage_equals_the_whole_answer():
    whole = chat(max_tokens=12).choices[0].message.content
    chunks = list(chat(max_tokens=12, stream=True))
    assert len({c.id for c in chunks}) == 1
    assert all(c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1
    assert sum(1 for c in chunks if c.choices and c.choices[0].finish_reason) == 1
    joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert joined == whole, (joined, whole)


def test_streaming_with_usage():
    chunks = list(chat(stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])
    assert terse_usage(last)["strategy"] == "none"


def test_n_2():
    r = chat(n=2, temperature=0.9, seed=3)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content for c in r.choices)
    # Usage sums both choices' tokens.
    assert 2 <= r.usage.completion_tokens <= 16, r.usage
    streamed = list(chat(n=2, stream=True))
    assert {c.choices[0].index for c in streamed if c.choices} == {0, 1}
    assert sum(1 for c in streamed if c.choices and c.choices[0].finish_reason) == 2


def test_stop():
    free = chat(messages=COUNT, max_tokens=30).choices[0].message.content
    assert "5" in free, free
    r = chat(messages=COUNT, max_tokens=30, stop=["5"])
    c = r.choices[0]
    assert "5" not in c.message.content and c.finish_reason == "stop", c
    assert free.startswith(c.message.content), (free, c.message.content)


def test_seed_reproducibility():
    a = chat(temperature=1.0, seed=1234, max_tokens=12).choices[0].message.content
    b = chat(temperature=1.0, seed=1234, max_tokens=12).choices[0].message.content
    assert a == b, (a, b)


def test_logprobs():
    r = chat(logprobs=True, top_logprobs=3, max_tokens=8)
    c = r.choices[0]
    tokens = c.logprobs.content
    assert "".join(t.token for t in tokens) == c.message.content
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in tokens)
    e = expect_400(lambda: chat(logprobs=True, top_logprobs=21))
    assert e.body["param"] == "top_logprobs", e.body
    assert health(OPEN) == 200
    assert chat().choices[0].message.content


def test_streamed_logprobs_come_with_their_tokens():
    whole = chat(logprobs=True, top_logprobs=2, max_tokens=8).choices[0].logprobs.content
    chunks = list(chat(logprobs=True, top_logprobs=2, max_tokens=8, stream=True))
    per_chunk = [c.choices[0].logprobs.content if c.choices and c.choices[0].logprobs else []
                 for c in chunks]
    streamed = [t for tokens in per_chunk for t in tokens]
    assert [t.token for t in streamed] == [t.token for t in whole], (streamed, whole)
    assert all(abs(a.logprob - b.logprob) < 1e-3 for a, b in zip(streamed, whole))
    assert all(len(t.top_logprobs) == 2 for t in streamed)
    # They come as the text does, not all at the end.
    with_text = [i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content]
    assert sum(1 for i in with_text if per_chunk[i]) >= len(whole) // 2, per_chunk
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and not finish[0].choices[0].logprobs


def test_strategy_via_extra_body():
    r = chat(extra_body={"terse": {"strategy": "budget", "options": {"reasoning_tokens": 2}}})
    t = terse_usage(r)
    assert t["strategy"] == "budget" and t["events"][0]["kind"] == "budget", t
    assert t["injected_tokens"] > 0


def test_strategy_via_model_suffix():
    r = chat(model=MODEL + "+budget", extra_body={"thinking_token_budget": 2})
    assert r.model == MODEL + "+budget"
    assert terse_usage(r)["events"][0]["kind"] == "budget", terse_usage(r)


def test_reasoning_effort():
    t = terse_usage(chat(reasoning_effort="none"))
    assert t["strategy"] == "budget" and t["events"][0]["kind"] == "budget", t
    assert terse_usage(chat(reasoning_effort="high"))["strategy"] == "none"
    e = expect_400(lambda: chat(extra_body={"reasoning_effort": "extreme"}))
    assert e.body["param"] == "reasoning_effort"


def test_malformed_messages():
    for bad in (None, "hello", [123], [{}]):
        expect_400(lambda: chat(messages=bad))
    assert health(OPEN) == 200


def test_prompt_over_the_context():
    e = expect_400(lambda: chat(messages=[{"role": "user", "content": "word " * (2 * CTX)}]))
    assert e.body["type"] == "exceed_context_size_error" and e.body["n_ctx"] == CTX, e.body


def test_unknown_model():
    try:
        chat(model="gpt-4o")
    except openai.NotFoundError as e:
        assert e.body["code"] == "model_not_found"
        return
    raise AssertionError("expected a 404")


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris right now?"}]


def test_tools_come_back_as_tool_calls():
    r = chat(messages=ASK_WEATHER, tools=WEATHER, max_tokens=80)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_"), call
    assert call.function.name == "get_weather", call
    assert json.loads(call.function.arguments)["city"] == "Paris", call
    assert c.message.content is None, c
    # Without the tools (tool_choice "none") the prompt is shorter: the signatures
    # were in it.
    plain = chat(messages=ASK_WEATHER, tools=WEATHER, tool_choice="none", max_tokens=4)
    assert plain.usage.prompt_tokens < r.usage.prompt_tokens
    assert plain.choices[0].message.tool_calls is None


def test_streamed_tool_calls():
    calls, content = [], ""
    for chunk in chat(messages=ASK_WEATHER, tools=WEATHER, max_tokens=80, stream=True):
        d = chunk.choices[0].delta
        content += d.content or ""
        calls += d.tool_calls or []
        finish = chunk.choices[0].finish_reason
    assert finish == "tool_calls" and content == "", (finish, content)
    assert [c.function.name for c in calls] == ["get_weather"], calls
    assert json.loads(calls[0].function.arguments)["city"] == "Paris"


def test_a_tool_result_goes_back_into_the_conversation():
    first = chat(messages=ASK_WEATHER, tools=WEATHER, max_tokens=80)
    call = first.choices[0].message.tool_calls[0]
    history = ASK_WEATHER + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
    ]
    r = chat(messages=history, tools=WEATHER, max_tokens=8)
    # The call and its result were rendered into the prompt (the model's answer to
    # them is its own business).
    assert r.usage.prompt_tokens > first.usage.prompt_tokens + 20, r.usage
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_tool_choice_required_forces_a_call_the_model_would_not_make():
    # "Say hello" calls no tool when the model is free to choose ...
    free = chat(tools=WEATHER, max_tokens=40)
    assert free.choices[0].finish_reason != "tool_calls", free
    # ... and one call, to an offered tool with JSON arguments, when it must.
    for choice in ("required", {"type": "function", "function": {"name": "get_weather"}}):
        r = chat(tools=WEATHER, tool_choice=choice, max_tokens=60)
        c = r.choices[0]
        assert c.finish_reason == "tool_calls", (choice, c)
        assert [t.function.name for t in c.message.tool_calls] == ["get_weather"], c
        assert isinstance(json.loads(c.message.tool_calls[0].function.arguments), dict), c
    e = expect_400(lambda: chat(tools=WEATHER, tool_choice={"type": "function", "function": {"name": "nope"}}))
    assert e.body["param"] == "tool_choice", e.body
    e = expect_400(lambda: chat(messages=ASK_WEATHER, tools=[{"type": "function"}]))
    assert e.body["param"] == "tools[0]", e.body


PERSON = [{"role": "user", "content": "Describe a person named Ann who is 30 and lives in Oslo."}]


def test_json_object_constrains_the_answer_to_json():
    r = chat(messages=PERSON, response_format={"type": "json_object"}, max_tokens=100)
    c = r.choices[0]
    assert c.finish_reason == "stop", c
    assert isinstance(json.loads(c.message.content), dict), c.message.content
    streamed = "".join(
        ch.choices[0].delta.content or ""
        for ch in chat(messages=PERSON, response_format={"type": "json_object"}, max_tokens=100, stream=True)
        if ch.choices
    )
    assert streamed == c.message.content, (streamed, c.message.content)


PERSON_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "languages": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age", "city", "languages"],
    "additionalProperties": False,
}


def test_json_schema_holds_the_answer_to_the_schema():
    fmt = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True}}
    r = chat(messages=PERSON, response_format=fmt, max_tokens=100)
    c = r.choices[0]
    assert c.finish_reason == "stop", c
    person = json.loads(c.message.content)
    assert list(person) == ["name", "age", "city", "languages"], person
    assert isinstance(person["age"], int) and isinstance(person["name"], str), person
    assert all(isinstance(lang, str) for lang in person["languages"]), person
    # A keyword the grammar cannot enforce is a 400 naming it, not an unchecked answer.
    loose = dict(PERSON_SCHEMA, properties=dict(PERSON_SCHEMA["properties"], age={"type": "integer", "minimum": 0}))
    e = expect_400(lambda: chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": loose}}))
    assert e.body["param"] == "response_format.json_schema.schema", e.body
    assert "'minimum'" in e.body["message"] and "$.properties.age" in e.body["message"], e.body
    assert health(OPEN) == 200


def test_auth():
    keyed = lambda key: openai.OpenAI(base_url=KEYED + "/v1", api_key=key, max_retries=0)
    assert [m.id for m in keyed(KEY).models.list()] == [MODEL]
    r = keyed(KEY).chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4)
    assert r.choices[0].message.content
    for wrong in ("wrong", KEY + "x"):
        try:
            keyed(wrong).models.list()
        except openai.AuthenticationError:
            continue
        raise AssertionError("a wrong key was let in")
    assert health(KEYED) == 200
    # The open server takes any key.
    assert [m.id for m in client.models.list()] == [MODEL]


def main():
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"ok    {name}")
        except Exception:  # noqa: BLE001 - every failure is reported
            failed += 1
            print(f"FAIL  {name}\n{traceback.format_exc()}")
    print(f"openai: {len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
