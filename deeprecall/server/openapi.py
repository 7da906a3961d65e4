"""The server's OpenAPI 3.1 description, written by hand: the request and error shapes are OpenAI's, and
the schema states exactly what ``parse_chat_request`` accepts (schemathesis checks the two agree)."""

from __future__ import annotations

from typing import Any

from deeprecall.server.settings import ServerSettings

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type", "code"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": {"type": "string"},
                   "param": {"type": ["string", "null"]}}}}}

_EVENT = {"type": "object", "required": ["data"], "description": "one SSE event: a chat.completion.chunk as JSON, "
          "or [DONE]", "properties": {"data": {"type": "string"}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "an OpenAI-shaped error", "content": {"application/json": {"schema": _ERROR}}}
            for s in statuses}


def openapi_document(settings: ServerSettings) -> dict[str, Any]:
    message = {"type": "object", "required": ["role", "content"], "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant", "developer"]},
        "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {
            "type": "object", "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}}]}}}
    request = {"type": "object", "required": ["model", "messages"], "properties": {
        "model": {"type": "string"},
        "messages": {"type": "array", "minItems": 1, "maxItems": settings.max_messages, "items": message},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "deeprecall": {"type": "object", "additionalProperties": False, "properties": {
            "filters": {"type": "object", "description": "ANDed with the key's tenant filters"},
            "top_k": {"type": "integer", "minimum": 1}}}}}
    completion = {"type": "object", "required": ["id", "object", "choices", "deeprecall"], "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "model": {"type": "string"},
        "choices": {"type": "array"}, "usage": {"type": "object"},
        "deeprecall": {"type": "object", "description": "query_id, sources, grounded, usage, seconds, error"}}}
    security: list[dict[str, list[str]]] = [{"bearer": []}] if settings.keys else []
    return {
        "openapi": "3.1.0",
        "info": {"title": "DeepRecall", "version": "1",
                 "description": "OpenAI-compatible chat completions answered by DeepRecall queries."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/v1/chat/completions": {"post": {
                "operationId": "createChatCompletion", "security": security,
                "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
                "responses": {"200": {"description": "a chat.completion, or with stream=true an SSE stream of "
                                                     "chat.completion.chunk events ended by data: [DONE]",
                                      "content": {"application/json": {"schema": completion},
                                                  "text/event-stream": {"schema": _EVENT}}},
                              **_errors(400, 401, 408, 413, 429, 503, 504)}}},
            "/v1/models": {"get": {"operationId": "listModels", "responses": {"200": {
                "description": "the model this server answers as", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["object", "data"],
                    "properties": {"object": {"const": "list"}, "data": {"type": "array"}}}}}}}}},
            "/healthz": {"get": {"operationId": "health", "responses": {
                "200": {"description": "every check passed", "content": {"application/json": {"schema": {
                    "type": "object"}}}},
                "503": {"description": "a check failed", "content": {"application/json": {"schema": {
                    "type": "object"}}}}}}},
        },
    }
