"""The complaint categories every deployment knows; `categories.yaml` in the config dir
may add more (schemas.Category, catalog.py)."""

# Categories every deployment knows; `categories.yaml` in the config dir may add more.
BUILTIN_CATEGORIES: dict[str, str] = {
    "outage": "移动网络/业务中断",
    "broadband": "宽带故障",
    "billing": "计费争议",
    "vas": "增值业务/SP扣费",
    "network_quality": "网络质量",
    "service": "服务态度/渠道",
    "install": "装机/移机",
    "spam": "骚扰/垃圾信息",
    "porting": "携号转网",
    "other": "其他",
}
