"""BibTeX entries of the methods our artifacts implement, cited by the generated model cards."""

from __future__ import annotations

CITATIONS: dict[str, str] = {
    "llada": """@article{nie2025llada,
  title   = {Large Language Diffusion Models},
  author  = {Nie, Shen and Zhu, Fengqi and You, Zebin and Zhang, Xiaolu and Ou, Jingyang and Hu, Jun and Zhou, Jun
             and Lin, Yankai and Wen, Ji-Rong and Li, Chongxuan},
  journal = {arXiv preprint arXiv:2502.09992},
  year    = {2025}
}""",
    "dream": """@misc{ye2025dream,
  title        = {Dream 7B},
  author       = {Ye, Jiacheng and Xie, Zhihui and Zheng, Lin and Gao, Jiahui and Wu, Zirui and Jiang, Xin
                  and Li, Zhenguo and Kong, Lingpeng},
  howpublished = {HKU NLP blog},
  year         = {2025}
}""",
    "maskgit": """@inproceedings{chang2022maskgit,
  title     = {MaskGIT: Masked Generative Image Transformer},
  author    = {Chang, Huiwen and Zhang, Han and Jiang, Lu and Liu, Ce and Freeman, William T.},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2022}
}""",
    "dimo": """@inproceedings{zhu2025dimo,
  title     = {Di[M]O: Distilling Masked Diffusion Models into One-step Generator},
  author    = {Zhu, Yuanzhi and Wang, Xi and Lathuili{\\`e}re, St{\\'e}phane and Kalogeiton, Vicky},
  booktitle = {Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages     = {18606--18618},
  year      = {2025}
}""",
    "quant_dllm": """@article{zhang2025quantdllm,
  title   = {Quant-dLLM: Post-Training Extreme Low-Bit Quantization for Diffusion Large Language Models},
  author  = {Zhang, Tianao and Li, Zhiteng and Yan, Xianglong and Qin, Haotong and Guo, Yong and Zhang, Yulun},
  journal = {arXiv preprint arXiv:2510.03274},
  year    = {2025}
}""",
    "logit_fm": """@article{sevriugov2024logitfm,
  title   = {Integrating Geodesic Interpolation and Flow Matching for Non-Autoregressive Text Generation in
             Logit Space},
  author  = {Sevriugov, Egor and Oseledets, Ivan},
  journal = {arXiv preprint arXiv:2411.16821},
  year    = {2024}
}""",
    "image_tokens_lm": """@inproceedings{zhang2023pretrained,
  title     = {Pre-trained Language Models Do Not Help Auto-regressive Text-to-Image Generation},
  author    = {Zhang, Yuhui and McKinzie, Brandon and Gan, Zhe and Shankar, Vaishaal and Toshev, Alexander},
  booktitle = {Proceedings on "I Can't Believe It's Not Better: Failure Modes in the Age of Foundation Models" at
               NeurIPS 2023 Workshops},
  series    = {PMLR},
  volume    = {239},
  pages     = {127--133},
  year      = {2023}
}""",
}
