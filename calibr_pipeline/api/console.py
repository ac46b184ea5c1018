from fastapi import APIRouter


def build_router(require_read, require_write) -> APIRouter:
    return APIRouter()
